"""The folder of one run: ``<out-dir>/<name>___<timestamp>/`` with its log and environment record.

Everything a run writes goes there (DESIGN §7), so runs never overwrite each other and a result
can always be traced back to the exact command, code version and library versions that made it.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

LATEST_LINK = "latest_log_dir"


def create_run_dir(out_dir: str | Path, name: str | None = None) -> Path:
    """Create a fresh run folder and point ``<out_dir>/latest_log_dir`` at it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y.%m.%d-%H%M%S")
    base = f"{name}___{stamp}" if name else stamp
    run_dir = out / base
    suffix = 1
    while run_dir.exists():  # two runs started in the same second
        suffix += 1
        run_dir = out / f"{base}_{suffix}"
    run_dir.mkdir()
    link = out / LATEST_LINK
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(run_dir.name)
    except OSError:  # file systems without symlinks: the link is a convenience only
        pass
    return run_dir


def resolve_latest_links(args: argparse.Namespace) -> None:
    """Resolve the command-line paths that go through a ``latest_log_dir`` link, in place.

    ``--resume-from logs/latest_log_dir/checkpoint.pth.tar`` names the run that was the latest when
    the command was typed; a new run in the same out-dir moves the link to itself before it reads
    its inputs, so such paths are resolved to their targets first.
    """
    for key, value in vars(args).items():
        if isinstance(value, str):
            setattr(args, key, _through_latest_link(value))
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            setattr(args, key, [_through_latest_link(item) for item in value])


def _through_latest_link(value: str) -> str:
    if LATEST_LINK in Path(value).parts and os.path.lexists(value):
        return os.path.realpath(value)
    return value


def _git_state(repo: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return f"{branch} @ {commit}{' (dirty)' if dirty else ''}"


def execution_environment(argv: list[str] | None = None) -> dict[str, str]:
    """Versions, devices, git state and command line of this process."""
    import torchvision

    import distiller

    package_dir = Path(distiller.__file__).resolve().parent
    env = {
        "command line": " ".join(argv if argv is not None else sys.argv),
        "working directory": os.getcwd(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "distiller": f"{distiller.__version__} ({package_dir})",
        "git": _git_state(package_dir),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda available": str(torch.cuda.is_available()),
    }
    if torch.cuda.is_available():
        env["gpus"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        env["cuda"] = str(torch.version.cuda)
        env["cudnn"] = str(torch.backends.cudnn.version())
    return env


def record_environment(run_dir: Path, config_files: list[str | Path] = (), argv: list[str] | None = None) -> None:
    """Log the execution environment and copy the run's config files into ``run_dir/configs``."""
    env = execution_environment(argv)
    for key, value in env.items():
        log.debug("%s: %s", key, value)
    (run_dir / "environment.txt").write_text("".join(f"{k}: {v}\n" for k, v in env.items()))
    if config_files:
        configs = run_dir / "configs"
        configs.mkdir(exist_ok=True)
        for path in config_files:
            shutil.copy2(path, configs / Path(path).name)
