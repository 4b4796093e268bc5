"""Charts of summaries, AGP schedules, training runs and sensitivities (distiller.analysis.charts)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import OrderedDict

import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from distiller.analysis import charts  # noqa: E402
from distiller.errors import ConfigError, ExportError, ScheduleError  # noqa: E402
from distiller.models import create_model  # noqa: E402
from distiller.pruning import prune  # noqa: E402
from distiller.pruning.rates import agp_target  # noqa: E402
from distiller.summary import compute_summary, sparsity_summary  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _progress(epochs: int, top1: list[float], steps_per_epoch: int = 2) -> pd.DataFrame:
    """A training_progress.csv table as the CSV logger writes it (long format)."""
    rows = []
    n = steps_per_epoch
    for epoch in range(epochs):
        for done in range(1, n + 1):
            rows.append(["train", epoch, done, n, epoch * n + done, "Overall Loss", 1.0 / done])
        rows.append(["valid", epoch, n, n, (epoch + 1) * n, "Top1", top1[epoch]])
        rows.append(["valid", epoch, n, n, (epoch + 1) * n, "Loss", 0.5])
    return pd.DataFrame(rows, columns=list(charts.PROGRESS_COLUMNS))


# --- summaries ------------------------------------------------------------------------------------


def test_sparsity_summary_draws_one_bar_per_layer_and_the_total_as_a_line() -> None:
    model = create_model("simplenet_digits", "digits")
    prune(model, {"class": "SparsityLevelParameterPruner", "levels": {"conv2.weight": 0.5}})
    df = sparsity_summary(model)
    ax = charts.plot_sparsity_summary(df)
    widths = [bar.get_width() for bar in ax.patches]
    assert len(widths) == 3  # conv1, conv2, fc; the "Total sparsity:" row is not a bar
    assert widths[1] == pytest.approx(50.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["conv1.weight", "conv2.weight", "fc.weight"]
    total = float(df["Fine (%)"].iloc[-1])
    assert any(line.get_xdata()[0] == pytest.approx(total) for line in ax.lines)


def test_sparsity_summary_groups_several_columns() -> None:
    df = sparsity_summary(create_model("resnet20_cifar", "cifar10"))
    ax = charts.plot_sparsity_summary(df, ["Fine (%)", "Ch (%)", "3D (%)"])
    assert len(ax.patches) == 3 * (len(df) - 1)
    assert len(ax.get_legend().get_texts()) == 3


def test_sparsity_summary_names_a_missing_column() -> None:
    df = sparsity_summary(create_model("simplenet_digits", "digits"))
    with pytest.raises(ConfigError, match="Nope"):
        charts.plot_sparsity_summary(df, "Nope (%)")
    with pytest.raises(ConfigError, match="DataFrame"):
        charts.plot_sparsity_summary({"Name": []})  # type: ignore[arg-type]


def test_compute_summary_draws_one_bar_per_layer_with_the_total_in_the_title() -> None:
    df = compute_summary(create_model("resnet20_cifar", "cifar10"))
    ax = charts.plot_compute_summary(df)
    assert len(ax.patches) == 22
    assert sum(bar.get_width() for bar in ax.patches) == pytest.approx(40_813_184)
    assert "40,813,184" in ax.get_title()


def test_charts_draw_into_a_given_axes() -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    model = create_model("simplenet_digits", "digits")
    assert charts.plot_compute_summary(compute_summary(model), ax=left) is left
    assert charts.plot_sparsity_summary(sparsity_summary(model), ax=right) is right
    assert len(fig.axes) == 2


# --- AGP ------------------------------------------------------------------------------------------


def test_agp_schedule_uses_the_pruners_rate_on_the_firing_epochs() -> None:
    schedule = charts.agp_schedule(0.05, 0.70, 0, 8, 2)
    assert schedule["epoch"].tolist() == [0, 2, 4, 6]
    assert schedule["sparsity"].iloc[0] == pytest.approx(0.05)
    assert schedule["sparsity"].iloc[-1] == pytest.approx(0.70)  # reached on the last firing epoch
    assert schedule["sparsity"].tolist() == pytest.approx([agp_target(0.05, 0.70, e, 0, 8, 2) for e in (0, 2, 4, 6)])
    assert schedule["sparsity"].is_monotonic_increasing


def test_agp_chart_has_one_point_per_pruning_event_and_overlays_configs() -> None:
    ax = charts.plot_agp_schedule(0.05, 0.70, 0, 8, 2)
    charts.plot_agp_schedule(0.0, 0.9, 1, 21, 1, ax=ax, label="fc")
    assert [len(line.get_xdata()) for line in ax.lines] == [4, 20]
    assert list(ax.lines[1].get_ydata())[-1] == pytest.approx(90.0)  # percent
    assert [t.get_text() for t in ax.get_legend().get_texts()][1] == "fc"


def test_agp_schedule_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="final_sparsity"):
        charts.agp_schedule(0.5, 0.2, 0, 10, 1)
    with pytest.raises(ConfigError, match="final_sparsity"):
        charts.agp_schedule(0.0, 1.5, 0, 10, 1)
    with pytest.raises(ScheduleError, match="span"):
        charts.agp_schedule(0.0, 0.5, 0, 2, 2)
    with pytest.raises(ConfigError, match="frequency"):
        charts.agp_schedule(0.0, 0.5, 0, 10, 0)


# --- training runs --------------------------------------------------------------------------------


def test_run_histories_draw_one_line_per_run(tmp_path) -> None:
    dense = _progress(3, [80.0, 90.0, 95.0])
    path = tmp_path / "run" / charts.PROGRESS_FILE
    path.parent.mkdir()
    _progress(2, [70.0, 85.0]).to_csv(path, index=False)
    ax = charts.plot_run_histories({"dense": dense, "agp": path.parent})
    assert [len(line.get_xdata()) for line in ax.lines] == [3, 2]
    assert list(ax.lines[0].get_xdata()) == [1.0, 2.0, 3.0]  # validation of epoch e, after e + 1 epochs
    assert list(ax.lines[1].get_ydata()) == [70.0, 85.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dense", "agp"]


def test_run_histories_place_in_epoch_values_at_their_fraction() -> None:
    ax = charts.plot_run_histories({"run": _progress(2, [1.0, 2.0], steps_per_epoch=4)}, "Overall Loss", "train")
    assert list(ax.lines[0].get_xdata()) == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    no_counts = _progress(2, [1.0, 2.0]).assign(completed=0, total=0)
    ax = charts.plot_run_histories({"run": no_counts})
    assert list(ax.lines[0].get_xdata()) == [0.0, 1.0]


def test_run_histories_list_what_a_run_has_when_the_metric_is_missing() -> None:
    with pytest.raises(ConfigError, match="valid/Top1"):
        charts.plot_run_histories({"run": _progress(1, [1.0])}, "Top5")
    with pytest.raises(ConfigError, match="at least one run"):
        charts.plot_run_histories({})


def test_load_training_progress_accepts_a_log_dir_an_out_dir_or_the_file(tmp_path) -> None:
    run_dir = tmp_path / "out" / "exp___2026.01.01-000000"
    run_dir.mkdir(parents=True)
    expected = _progress(2, [50.0, 60.0])
    expected.to_csv(run_dir / charts.PROGRESS_FILE, index=False)
    (tmp_path / "out" / "latest_log_dir").symlink_to(run_dir.name)
    for where in (run_dir, tmp_path / "out", run_dir / charts.PROGRESS_FILE):
        pd.testing.assert_frame_equal(charts.load_training_progress(where), expected)


def test_load_training_progress_rejects_missing_or_foreign_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="No training_progress.csv"):
        charts.load_training_progress(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("epoch,top1\n0,1.0\n")
    with pytest.raises(ConfigError, match="metric"):
        charts.load_training_progress(other)


# --- sensitivities --------------------------------------------------------------------------------


def test_sensitivity_chart_has_one_curve_per_parameter() -> None:
    levels = [0.0, 0.25, 0.5, 0.75]
    sens = OrderedDict(
        (name, OrderedDict((s, (100.0 - k * 50 * s, 100.0, 0.1 + s)) for s in levels))
        for k, name in enumerate(["conv1.weight", "conv2.weight", "fc.weight"])
    )
    ax = charts.plot_sensitivities(sens)
    assert len(ax.lines) == 3
    assert all(len(line.get_xdata()) == 4 for line in ax.lines)
    assert list(ax.lines[2].get_ydata()) == pytest.approx([100.0, 75.0, 50.0, 25.0])
    frame = pd.DataFrame(
        [[p, s, *v] for p, curve in sens.items() for s, v in curve.items()],
        columns=["parameter", "sparsity", "top1", "top5", "loss"],
    )
    ax = charts.plot_sensitivities(frame, "loss")
    assert len(ax.lines) == 3
    assert list(ax.lines[0].get_ydata()) == pytest.approx([0.1, 0.35, 0.6, 0.85])
    with pytest.raises(ConfigError, match="top1, top5, loss"):
        charts.plot_sensitivities(sens, "accuracy")


# --- saving ---------------------------------------------------------------------------------------


def test_save_figure_writes_a_png_atomically(tmp_path) -> None:
    import matplotlib.pyplot as plt

    ax = charts.plot_agp_schedule(0.0, 0.5, 0, 10, 1)
    out = charts.save_figure(ax, tmp_path / "charts" / "agp.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in out.parent.iterdir()] == ["agp.png"]  # no temporary file left
    charts.save_figure(ax.figure, out, close=True)
    assert not plt.fignum_exists(ax.figure.number)


def test_save_figure_reports_an_unwritable_path(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ax = charts.plot_agp_schedule(0.0, 0.5, 0, 10, 1)
    with pytest.raises(ExportError, match="is a file"):
        charts.save_figure(ax, blocker / "agp.png")
    with pytest.raises(ConfigError, match="Figure or Axes"):
        charts.save_figure("not a figure", tmp_path / "x.png")  # type: ignore[arg-type]


def test_missing_matplotlib_is_a_clear_error(monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match="pip install"):
        charts.plot_agp_schedule(0.0, 0.5, 0, 10, 1)


def test_a_headless_machine_draws_with_agg(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    code = (
        "import matplotlib, sys\n"
        "from distiller.analysis import plot_agp_schedule, save_figure\n"
        "assert 'matplotlib.pyplot' not in sys.modules  # imported only when drawing\n"
        f"save_figure(plot_agp_schedule(0.0, 0.5, 0, 10, 2), {str(tmp_path / 'a.png')!r})\n"
        "print(matplotlib.get_backend().lower())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "agg"
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG_MAGIC
