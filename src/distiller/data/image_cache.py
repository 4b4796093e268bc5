"""Image folders decoded once into a uint8 tensor, cached on disk.

A folder of small images (``<root>/<class>/<file>.png``, torchvision's ``ImageFolder`` layout)
costs seconds to decode on every run. It is decoded once into a (N, C, H, W) uint8 tensor plus
labels, and saved as ``.npz`` under the cache folder (``$DISTILLER_CACHE_DIR``, default
``~/.cache/distiller``). The cache file is keyed by the folder's absolute path, file count, total
size and latest modification time, so editing the folder invalidates it. The cache is only an
optimisation: an unwritable cache folder or an unreadable cache file is ignored. Within one process
the decoded tensors are also kept in memory, because the loader builds each split twice (train and
evaluation transforms).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distiller.errors import DataError

CACHE_ENV = "DISTILLER_CACHE_DIR"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FORMAT = "image-folder-v1"
_MEMORY_ENTRIES = 4
_memory: OrderedDict[str, ImageArrays] = OrderedDict()


@dataclass(frozen=True)
class ImageArrays:
    """A decoded image folder: images (N, C, H, W) uint8, labels (N,) int64, class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]


def cache_dir() -> Path:
    """The folder for derived data: ``$DISTILLER_CACHE_DIR`` or ``~/.cache/distiller``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "distiller"


def clear_memory_cache() -> None:
    """Forget the decoded folders kept in this process (the disk cache stays)."""
    _memory.clear()


def _scan(root: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]], str]:
    """Class names, (file, label) pairs in ImageFolder order, and the folder's cache key."""
    classes = tuple(sorted(entry.name for entry in os.scandir(root) if entry.is_dir()))
    if not classes:
        raise DataError(f"No class folders in {root}: expected {root}/<class name>/<image files>.")
    files: list[tuple[Path, int]] = []
    latest = root.stat().st_mtime_ns
    size = 0
    for label, name in enumerate(classes):
        for folder, _, names in sorted(os.walk(root / name, followlinks=True)):
            latest = max(latest, os.stat(folder).st_mtime_ns)
            for file_name in sorted(names):
                if file_name.lower().endswith(IMAGE_EXTENSIONS):
                    path = Path(folder, file_name)
                    stat = path.stat()
                    latest, size = max(latest, stat.st_mtime_ns), size + stat.st_size
                    files.append((path, label))
    if not files:
        raise DataError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {root}.")
    key = f"{_FORMAT}|{root.resolve()}|{len(files)}|{size}|{latest}"
    return classes, files, key


def _decode(files: list[tuple[Path, int]], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_image

    mode = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}[channels]
    images: torch.Tensor | None = None
    for i, (path, _) in enumerate(files):
        try:
            image = decode_image(str(path), mode=mode)
        except (RuntimeError, OSError, ValueError) as err:
            raise DataError(f"Cannot decode image {path}: {err}") from err
        if images is None:
            images = torch.empty((len(files), *image.shape), dtype=torch.uint8)
        elif image.shape != images.shape[1:]:
            raise DataError(
                f"Image {path} has shape {tuple(image.shape)}, unlike the first image's "
                f"{tuple(images.shape[1:])}; all images of a cached folder must have one size."
            )
        images[i] = image
    assert images is not None
    return images, torch.tensor([label for _, label in files], dtype=torch.long)


def _cache_file(key: str) -> Path:
    return cache_dir() / f"image-folder-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def _read_cache(path: Path, key: str) -> ImageArrays | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return ImageArrays(
                torch.from_numpy(data["images"].copy()),
                torch.from_numpy(data["labels"].astype(np.int64)),
                tuple(str(c) for c in data["classes"]),
            )
    except Exception:  # a missing, truncated or foreign file is a cache miss, never an error
        return None


def _write_cache(path: Path, key: str, arrays: ImageArrays) -> None:
    """Write atomically (temporary file, then rename); give up silently where we cannot write."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle,
                key=np.array(key),
                images=arrays.images.numpy(),
                labels=arrays.labels.numpy(),
                classes=np.array(arrays.classes),
            )
        os.replace(tmp_name, path)
    except OSError:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def load_image_folder(root: Path | str, *, channels: int = 3) -> ImageArrays:
    """Decode ``root/<class>/<image>`` into tensors, from memory or the disk cache when fresh.

    Class ids follow the sorted class-folder names and samples follow ImageFolder's order (sorted
    file names within each class), so labels and indices match ``torchvision.datasets.ImageFolder``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Image folder {root} does not exist.")
    classes, files, key = _scan(root)
    key = f"{key}|c{channels}"
    if key in _memory:
        _memory.move_to_end(key)
        return _memory[key]
    path = _cache_file(key)
    arrays = _read_cache(path, key)
    if arrays is None:
        images, labels = _decode(files, channels)
        arrays = ImageArrays(images, labels, classes)
        _write_cache(path, key, arrays)
    _memory[key] = arrays
    while len(_memory) > _MEMORY_ENTRIES:
        _memory.popitem(last=False)
    return arrays
