"""Writing output files atomically, with user-facing errors.

Reports and exported models are written to a temporary file next to the target and renamed over it
only once complete: a reader (or a later run) never sees a half-written ONNX file or PNG, and an
existing file stays intact when writing fails. An ``OSError`` (missing permission, a path through a
regular file, a full disk) becomes an :class:`~distiller.errors.ExportError` that names the path,
which the CLI prints as one line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from distiller.errors import ExportError

__all__ = ["atomic_output"]


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` when the block succeeds.

    Args:
        path: the final file; its parent folders are created.
        what: what is written (``"ONNX file"``), for the error message.

    Raises:
        ExportError: the folder or file cannot be written; nothing is left behind, and an existing
            ``path`` is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        try:
            _make_folder(path.parent)
            tmp.touch(exist_ok=False)
            yield tmp
            os.replace(tmp, path)
        except OSError as e:
            reason = e.strerror or str(e)
            raise ExportError(
                f"Cannot write the {what} {str(path)!r}: {reason}. Choose a writable path; existing files are "
                "unchanged."
            ) from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _make_folder(folder: Path) -> None:
    """``mkdir -p``, with a clear reason when a part of the path is a file (mkdir says "File exists")."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(e.errno, f"{str(blocking)!r} is a file, not a folder") from e
