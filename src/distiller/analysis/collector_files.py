"""Writing collectors' DataFrames as ``.xlsx`` workbooks or ``.csv`` files.

The original wrote its statistics only as Excel workbooks (with xlsxwriter). Workbooks are what
people open by hand, CSV is what scripts and diffs read, so both are offered and the file's
extension chooses: ``.xlsx`` or ``.csv``; a name without an extension gets ``.xlsx``, the original's
format. Excel files are written by pandas with openpyxl, an optional dependency
(``pip install 'distiller-nn[analysis]'``) imported only when a workbook is written.

Files are written atomically (:func:`distiller.fileio.atomic_output`): a reader never sees half a
workbook, and a failed write leaves an existing file as it was.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from distiller.errors import ConfigError
from distiller.fileio import atomic_output

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TABLE_FORMATS",
    "excel_sheet_names",
    "openpyxl_available",
    "require_openpyxl",
    "table_path",
    "write_csv",
    "write_workbook",
]

TABLE_FORMATS = ("xlsx", "csv")
"""The file formats of the collectors' ``save``, chosen by the file's extension."""

_SHEET_NAME_MAX = 31  # Excel's limit
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


def table_path(fname: str | Path, what: str = "fname") -> tuple[Path, str]:
    """``(path, format)`` for a collector's ``save``: the format from the extension (``.xlsx`` added
    when there is none).

    Raises:
        ConfigError: any other extension.
    """
    path = Path(fname)
    suffix = path.suffix.lower()
    if suffix == "":
        return path.with_name(path.name + ".xlsx"), "xlsx"
    if suffix.lstrip(".") in TABLE_FORMATS:
        return path, suffix.lstrip(".")
    raise ConfigError(
        f"{what}: cannot write statistics to {str(path)!r}: the extension {path.suffix!r} is not one of "
        f"{', '.join('.' + f for f in TABLE_FORMATS)}. Name the file with one of them (no extension means .xlsx)."
    )


def openpyxl_available() -> bool:
    """Whether openpyxl (needed for ``.xlsx`` files) can be imported."""
    return importlib.util.find_spec("openpyxl") is not None


def require_openpyxl() -> None:
    """Raise a clear error where openpyxl is missing (before any work is done).

    Raises:
        ConfigError: openpyxl is not installed.
    """
    if not openpyxl_available():
        raise ConfigError(
            "Writing .xlsx statistics needs openpyxl, which is not installed: pip install openpyxl "
            "(or pip install 'distiller-nn[analysis]'), or save to a .csv file instead."
        )


def excel_sheet_names(names: Iterable[str], reserved: Iterable[str] = ()) -> dict[str, str]:
    """A valid, unique Excel sheet name for each of ``names`` (module names), in order.

    Excel refuses names over 31 characters, names with ``[]:*?/\\``, names starting or ending with
    ``'`` and names that differ only by case. Long module names keep their head and tail (the most
    specific part: ``layer4.1.conv2``) around a ``~``; clashes get a ``~2``, ``~3``... suffix.

    Args:
        names: the names to map.
        reserved: sheet names already taken (compared without case).
    """
    used = {r.casefold() for r in reserved}
    result: dict[str, str] = {}
    for name in names:
        clean = _SHEET_FORBIDDEN.sub("_", name).strip("'") or "sheet"
        if len(clean) > _SHEET_NAME_MAX:
            head = (_SHEET_NAME_MAX - 1) // 2
            clean = f"{clean[:head]}~{clean[-(_SHEET_NAME_MAX - 1 - head) :]}"
        candidate, n = clean, 1
        while candidate.casefold() in used:
            n += 1
            tag = f"~{n}"
            candidate = clean[: _SHEET_NAME_MAX - len(tag)] + tag
        used.add(candidate.casefold())
        result[name] = candidate
    return result


def write_workbook(sheets: Mapping[str, pd.DataFrame], path: Path, *, index: bool = True) -> Path:
    """Write ``{sheet name: frame}`` to the workbook ``path`` (sheet names must already be valid).

    Raises:
        ConfigError: openpyxl is not installed.
        ExportError: the file cannot be written.
    """
    require_openpyxl()
    import pandas as pd

    # The temporary name ends with .tmp, so the engine is named rather than inferred.
    with atomic_output(path, "statistics workbook") as tmp, pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        for sheet, frame in sheets.items():
            frame.to_excel(writer, sheet_name=sheet, index=index)
    return path


def write_csv(frame: pd.DataFrame, path: Path, *, index: bool = True) -> Path:
    """Write ``frame`` to the CSV file ``path``.

    Raises:
        ExportError: the file cannot be written.
    """
    with atomic_output(path, "statistics CSV file") as tmp:
        frame.to_csv(tmp, index=index)
    return path
