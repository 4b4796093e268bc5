"""Checkpoint safety: atomic writes, corrupt files, and files that would run code when unpickled."""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from distiller.checkpoint import read_checkpoint, save_checkpoint
from distiller.errors import CheckpointError
from shared_data import CHECKPOINTS


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(directory: Path, epoch: int = 1, **kw) -> list[Path]:
    return save_checkpoint(directory, model=nn.Linear(3, 2), arch=None, dataset=None, epoch=epoch, **kw)


@pytest.fixture
def existing(tmp_path) -> Path:
    save(tmp_path, epoch=1, is_best=True)
    return tmp_path


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_failed_write_leaves_existing_files_and_no_temporaries(existing, monkeypatch, error):
    before = {p.name: digest(p) for p in existing.iterdir()}

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    expected = CheckpointError if isinstance(error, OSError) else type(error)
    with pytest.raises(expected) as info:
        save(existing, epoch=2, is_best=True)
    if isinstance(error, OSError):
        assert "No space left on device" in str(info.value) and "unchanged" in str(info.value)
    assert {p.name: digest(p) for p in existing.iterdir()} == before
    monkeypatch.undo()
    assert read_checkpoint(existing / "checkpoint.pth.tar")["epoch"] == 1


def test_failed_copy_to_best_leaves_both_files(existing, monkeypatch):
    before = {p.name: digest(p) for p in existing.iterdir()}

    def failing_copy(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("shutil.copyfile", failing_copy)
    with pytest.raises(CheckpointError, match="Input/output error"):
        save(existing, epoch=2, is_best=True)
    assert {p.name: digest(p) for p in existing.iterdir()} == before


def test_successful_overwrite_replaces_content(existing):
    save(existing, epoch=5)
    assert read_checkpoint(existing / "checkpoint.pth.tar")["epoch"] == 5
    assert read_checkpoint(existing / "best.pth.tar")["epoch"] == 1
    assert sorted(p.name for p in existing.iterdir()) == ["best.pth.tar", "checkpoint.pth.tar"]


def assert_refused(path: Path, match: str) -> CheckpointError:
    before = digest(path)
    with pytest.raises(CheckpointError, match=match) as info:
        read_checkpoint(path)
    assert digest(path) == before
    return info.value


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth.tar")
    with pytest.raises(CheckpointError, match="not a file"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [os.urandom(4096), b"", b"\x80\x02\x8a\x0a"])
def test_random_or_empty_bytes_are_corrupt(tmp_path, content):
    path = tmp_path / "random.pth.tar"
    path.write_bytes(content)
    assert_refused(path, "is corrupt or truncated: ")


def test_truncated_new_format_file(existing):
    data = (existing / "checkpoint.pth.tar").read_bytes()
    path = existing / "truncated.pth.tar"
    path.write_bytes(data[: len(data) // 2])
    assert_refused(path, "is corrupt or truncated: .*central directory")


@pytest.mark.realdata
def test_truncated_legacy_file(tmp_path):
    source = CHECKPOINTS / "checkpoint_trained_dense.pth.tar"
    if not source.is_file():
        pytest.skip(f"original Distiller checkpoints not found at {CHECKPOINTS} (../shared/data is absent)")
    data = source.read_bytes()
    path = tmp_path / "half.pth.tar"
    path.write_bytes(data[: len(data) // 2])
    assert_refused(path, "is corrupt or truncated: ")


class Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {"w": torch.ones(1)}, "extras": Payload(marker)}, path)
    error = assert_refused(path, "refuses to execute code from checkpoints")
    assert "getattr" in str(error) and not marker.exists()  # pickled as getattr(PosixPath, "touch")


class LocalObject:
    def __init__(self) -> None:
        self.value = 3


def test_arbitrary_class_is_named_in_the_error(tmp_path):
    path = tmp_path / "object.pth.tar"
    torch.save({"state_dict": {}, "arch": "x", "config": LocalObject()}, path)
    error = assert_refused(path, "weights_only=True")
    assert "LocalObject" in str(error)


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": LocalObject()}))
    assert_refused(path, "corrupt or truncated")


def test_non_dict_content(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.ones(3), path)
    assert_refused(path, "holds a Tensor, not a checkpoint")
    torch.save({"epoch": 3}, path)
    assert_refused(path, "not a Distiller checkpoint")
