"""Console and log-file output of the command-line tools (the library itself never prints)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_FILE_FORMAT = "%(asctime)s - %(levelname)s - %(name)s - %(message)s"


class _ConsoleFormatter(logging.Formatter):
    """Plain messages for INFO; warnings and errors carry their level."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname}: {message}"


PROGRESS_LOGGER = "distiller.progress"
"""Per-batch progress lines and per-epoch tables: shown on stderr, so stdout carries results only."""


def _is_progress(record: logging.LogRecord) -> bool:
    return record.name == PROGRESS_LOGGER or record.name.startswith(PROGRESS_LOGGER + ".")


def configure_logging(verbose: bool = False, log_file: Path | None = None) -> None:
    """Send the ``distiller`` loggers to stdout, progress to stderr (DESIGN §7), and everything to
    ``log_file`` with timestamps."""
    root = logging.getLogger("distiller")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(_ConsoleFormatter("%(message)s"))
    console.addFilter(lambda record: not _is_progress(record))
    root.addHandler(console)
    progress = logging.StreamHandler(sys.stderr)
    progress.setFormatter(_ConsoleFormatter("%(message)s"))
    progress.addFilter(_is_progress)
    root.addHandler(progress)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
        root.addHandler(file_handler)
    root.propagate = False


def emit(line: str = "") -> None:
    """A line of the CLI's own output (results, tables): stdout, and the run's log file if any."""
    print(line, flush=True)
    for handler in logging.getLogger("distiller").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.stream.write(line + "\n")
            handler.flush()
