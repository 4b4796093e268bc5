"""Bad input gives a one-paragraph error, exit status 2, no traceback, and touches no file."""

from __future__ import annotations

import hashlib
import pickle

import torch

from distiller.models import create_model


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_user_error(run, *fragments):
    assert run.code == 2, (run.out, run.err)
    assert "Traceback" not in run.err
    assert run.err.startswith("distiller: error: ")
    assert len(run.err.strip().splitlines()) == 1
    for fragment in fragments:
        assert fragment in run.err, run.err


def test_unknown_arch_suggests(run_cli):
    assert_user_error(run_cli("classify", "-a", "resnet20_cifr", "--evaluate"), "resnet20_cifar", "Did you mean")


def test_missing_dataset_dir(run_cli, tmp_path):
    missing = tmp_path / "no_such_dir"
    assert_user_error(run_cli("classify", "-a", "resnet20_cifar", "--evaluate", missing), str(missing))


def test_dataset_dir_required(run_cli):
    assert_user_error(run_cli("classify", "-a", "resnet20_cifar", "--evaluate"), "cifar10")


def test_checkpoint_of_another_architecture(run_cli, tmp_path):
    first = run_cli("classify", "-a", "simplenet_digits", "--epochs", "1", "--etrs", "64", "-j", "0",
                    "--deterministic", out_dir=tmp_path / "a")
    assert first.code == 0, first.err
    ckpt = first.log_dir() / "checkpoint.pth.tar"
    before = _digest(ckpt)
    run = run_cli("classify", "-a", "simplenet_mnist", "--dataset", "digits", "--evaluate", "--resume-from", ckpt)
    assert run.code == 2 and "simplenet_digits" in run.err and "Traceback" not in run.err
    assert _digest(ckpt) == before


def test_corrupt_and_truncated_checkpoints(run_cli, tmp_path):
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"\x00not a checkpoint" * 64)
    assert_user_error(run_cli("classify", "-a", "simplenet_digits", "-e", "--resume-from", garbage), str(garbage))
    model = create_model("simplenet_digits")
    full = tmp_path / "full.pth.tar"
    torch.save({"state_dict": model.state_dict(), "arch": "simplenet_digits"}, full)
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    before = _digest(truncated)
    assert_user_error(run_cli("classify", "-a", "simplenet_digits", "-e", "--resume-from", truncated), "truncated")
    assert _digest(truncated) == before


class Payload:
    """A class a malicious checkpoint could pickle; loading it must be refused."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoint_needing_unsafe_unpickling(run_cli, tmp_path, capsys):
    evil = tmp_path / "evil.pth.tar"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": {}, "extra": Payload()}, f)
    run = run_cli("classify", "-a", "simplenet_digits", "-e", "--resume-from", evil)
    assert_user_error(run, str(evil))
    assert "code ran" not in run.out


def test_debug_flag_shows_traceback(run_cli):
    import pytest

    from distiller.errors import ConfigError

    with pytest.raises(ConfigError):
        run_cli("--debug", "classify", "-a", "nope_arch", "--evaluate")
