import argparse

from distiller.apps.run_dir import create_run_dir, execution_environment, record_environment, resolve_latest_links
from distiller.determinism import derive_seed


def test_run_dirs_are_unique_and_latest_link_follows(tmp_path):
    first = create_run_dir(tmp_path, "exp")
    second = create_run_dir(tmp_path, "exp")
    assert first != second and first.name.startswith("exp___") and second.exists()
    assert (tmp_path / "latest_log_dir").resolve() == second.resolve()


def test_environment_is_recorded_with_configs(tmp_path):
    config = tmp_path / "schedule.yaml"
    config.write_text("version: 1\n")
    run_dir = create_run_dir(tmp_path / "logs")
    record_environment(run_dir, [config], argv=["distiller", "classify", "-a", "x"])
    text = (run_dir / "environment.txt").read_text()
    assert "command line: distiller classify -a x" in text and "torch: " in text and "git: " in text
    assert (run_dir / "configs" / "schedule.yaml").read_text() == "version: 1\n"
    assert set(execution_environment([])) >= {"python", "torch", "torchvision", "distiller"}


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "epoch", 1) == derive_seed(0, "epoch", 1)
    assert len({derive_seed(s, "epoch", e) for s in range(3) for e in range(10)}) == 30
    assert 0 <= derive_seed(123, "x") < 2**63


def test_paths_through_the_latest_link_are_pinned_before_a_new_run_moves_it(tmp_path):
    first = create_run_dir(tmp_path, "exp")
    (first / "checkpoint.pth.tar").write_bytes(b"x")
    through_link = str(tmp_path / "latest_log_dir" / "checkpoint.pth.tar")
    args = argparse.Namespace(
        resume_from=through_link, configs=[through_link, "plain.yaml"], name="latest_log_dir", epochs=3
    )
    resolve_latest_links(args)
    create_run_dir(tmp_path, "exp")  # the new run moves the link
    assert args.resume_from == str((first / "checkpoint.pth.tar").resolve())
    assert args.configs == [args.resume_from, "plain.yaml"]
    assert args.name == "latest_log_dir" and args.epochs == 3  # not a path through the link: unchanged
