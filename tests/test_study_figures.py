"""The study's figures say what they show: legends off the data, log axes named and ticked,
diverged arms noted in their panels, every text inside the canvas, and paired_differences.png
drawn from the paired differences' own numbers. Drawn from the committed results files."""

import copy
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.ticker import LogLocator

import compare_batch_norm as cbn
from support import study_figures
from support.study_stats import paired_differences
from support.study_store import load_results, study_runs

DOCS = Path(__file__).resolve().parent.parent / "docs"
RESULTS = {
    "default": DOCS / "batch_norm" / "results.json",
    "extended": DOCS / "batch_norm_extended" / "results.json",
}


@pytest.fixture(scope="module", params=["default", "extended"])
def study(request):
    """(runs, settings) of a committed study."""
    results = load_results(os.fspath(RESULTS[request.param]))
    return study_runs(results), results["settings"]


@pytest.fixture(scope="module")
def default():
    results = load_results(os.fspath(RESULTS["default"]))
    return study_runs(results), results["settings"]


@pytest.fixture(scope="module")
def extended():
    results = load_results(os.fspath(RESULTS["extended"]))
    return study_runs(results), results["settings"]


def _drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def _data_paths(ax):
    """(artist, display-space path, filled) of an axes' curves and bands."""
    for line in ax.get_lines():
        if len(line.get_xdata()) and line.get_visible():
            yield line, line.get_transform().transform_path(line.get_path()), False
    for band in ax.collections:
        for path in band.get_paths():
            yield band, band.get_transform().transform_path(path), True


def covered_data(fig):
    """The (legend, axes) pairs where a legend's box covers a curve or a band of that axes."""
    renderer = _drawn(fig)
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    hits = []
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if any(path.intersects_bbox(box, filled=filled) for _, path, filled in _data_paths(ax)):
                hits.append((legend, ax))
    return hits


def test_accuracy_legends_cover_no_curve_nor_band(study):
    runs, settings = study
    lr = study_figures.figure_lr(settings)
    if settings["study"] == "default":
        fig = study_figures.curves_figure(runs, settings, "val_accuracy", "validation accuracy", lr)
    else:
        fig = study_figures.val_panels_figure(runs, settings)
    assert covered_data(fig) == []


def test_the_legend_check_sees_a_legend_on_the_bands(default):
    """The earlier placement, the legend in the axes' lower right, covered [128]'s band."""
    runs, settings = default
    fig = study_figures.curves_figure(runs, settings, "val_accuracy", "validation accuracy", 0.1)
    fig.legends.clear()
    fig.axes[0].legend(loc="lower right", fontsize=9)
    assert covered_data(fig)


def _log_axes_problems(fig):
    problems = []
    for ax in fig.axes:
        if ax.get_yscale() == "log":
            low, high = ax.get_ylim()
            ticks = [t for t in ax.yaxis.get_majorticklocs() if low <= t <= high]
            if "log" not in ax.get_ylabel():
                problems.append(f"{ax.get_ylabel()!r} does not say log")
            if len(ticks) < 3:
                problems.append(f"{ax.get_ylabel()!r}: ticks {ticks} in {low:.3g} to {high:.3g}")
    return problems


def test_log_axes_say_so_and_have_three_ticks(study):
    runs, settings = study
    fig = study_figures.layer_stats_figure(runs, settings, study_figures.figure_lr(settings))
    assert sum(ax.get_yscale() == "log" for ax in fig.axes) == 2
    _drawn(fig)
    assert _log_axes_problems(fig) == []


def test_the_log_check_sees_too_few_ticks_and_a_silent_label(extended):
    """Ticks at 1, 2, 5 x 10^k left a pre-activation std of 1 to 3.2 with two ticks."""
    runs, settings = extended
    fig = study_figures.layer_stats_figure(runs, settings, 0.1)
    ax = fig.axes[0]
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.set_ylabel("pre-activation std")
    _drawn(fig)
    problems = _log_axes_problems(fig)
    assert len(problems) == 2 and "does not say log" in problems[0] and "ticks" in problems[1]


def _expected_notes(runs, settings):
    """{lr: the diverged arms' lines} from the runs themselves."""
    notes = {lr: [] for lr in settings["lrs"]}
    for dims in settings["architectures"]:
        for lr in settings["lrs"]:
            for bn in (False, True):
                arm = [r for r in runs if (r["hidden_dims"], r["lr"], r["use_batch_norm"]) == (dims, lr, bn)]
                n = sum(r["diverged"] for r in arm)
                if n:
                    notes[lr].append(f"{dims} {'BN' if bn else 'no BN'}: diverged ({n} of {len(arm)} seeds)")
    return notes


def _panel_notes(fig, settings):
    panels = {ax.get_title(): ax for ax in fig.axes}
    notes = {}
    for lr in settings["lrs"]:
        legend = panels[f"lr {lr:g}"].get_legend()
        notes[lr] = [t.get_text() for t in legend.get_texts()] if legend else []
    return notes


def test_the_panels_of_diverged_arms_say_so(extended):
    runs, settings = extended
    expected = _expected_notes(runs, settings)
    assert (
        expected[0.3]
        == expected[1.0]
        == [
            "[128] no BN: diverged (3 of 3 seeds)",
            "[512, 256, 128] no BN: diverged (3 of 3 seeds)",
        ]
    )
    assert _panel_notes(study_figures.val_panels_figure(runs, settings), settings) == expected


def test_one_diverged_seed_of_an_arm_is_noted_too(extended):
    runs, settings = extended
    runs = copy.deepcopy(runs)
    run = next(r for r in runs if (r["hidden_dims"], r["lr"], r["use_batch_norm"]) == ([128], 0.1, True))
    run.update(diverged=True, test_accuracy=None, val_accuracy=run["val_accuracy"][:3])
    notes = _panel_notes(study_figures.val_panels_figure(runs, settings), settings)
    assert notes[0.1] == ["[128] BN: diverged (1 of 3 seeds)"]
    assert notes == _expected_notes(runs, settings)


def test_the_note_check_fails_without_the_note(extended, monkeypatch):
    runs, settings = extended
    monkeypatch.setattr(study_figures, "_diverged_note", lambda *args: None)
    notes = _panel_notes(study_figures.val_panels_figure(runs, settings), settings)
    assert notes != _expected_notes(runs, settings)


def test_lr_sweep_diverged_strip_lies_below_every_curve_and_is_labelled(extended):
    runs, settings = extended
    fig = study_figures.lr_sweep_figure(runs, settings)
    _drawn(fig)
    ax = fig.axes[0]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 4  # [128] and [512, 256, 128] without BN, at lr 0.3 and 1

    def height(path):  # in axes fraction, 0 the bottom of the axes
        return ax.transAxes.inverted().transform(path.vertices)[:, 1]

    strip_top = max(height(line.get_transform().transform_path(line.get_path())).max() for line in crosses)
    data_bottom = min(np.nanmin(height(path)) for artist, path, _ in _data_paths(ax) if artist not in crosses)
    assert 0 < strip_top < data_bottom
    assert any(t.get_text() == "diverged" for t in ax.texts)
    assert any("diverged" in t.get_text() for t in fig.legends[0].get_texts())


def drawn_beyond_canvas(fig):
    """The inches by which what is drawn (titles, labels, legends, tick labels in view) leaves the
    canvas at the left, bottom, right and top; all zero when everything fits."""
    box = fig.get_tightbbox(_drawn(fig))
    width, height = fig.get_size_inches()
    return [round(max(0.0, v), 2) for v in (-box.x0, -box.y0, box.x1 - width, box.y1 - height)]


def _all_figures(runs, settings):
    lr = study_figures.figure_lr(settings)
    figures = {
        "paired_differences": study_figures.paired_figure(runs, settings),
        "layer_stats": study_figures.layer_stats_figure(runs, settings, lr),
        "first_steps": study_figures.first_steps_figure(runs, settings, lr),
    }
    if settings["study"] == "default":
        figures["val_accuracy"] = study_figures.curves_figure(
            runs, settings, "val_accuracy", "validation", lr
        )
        figures["test_accuracy"] = study_figures.accuracy_dot_figure(runs, settings, lr)
    else:
        figures["lr_sweep"] = study_figures.lr_sweep_figure(runs, settings)
        figures["val_accuracy"] = study_figures.val_panels_figure(runs, settings)
    return figures


def test_every_text_lies_inside_the_canvas(study):
    for name, fig in _all_figures(*study).items():
        assert drawn_beyond_canvas(fig) == [0, 0, 0, 0], name


def test_the_canvas_check_sees_a_clipped_title(study):
    fig = study_figures.paired_figure(*study)
    fig.axes[0].set_title("a title far too long to fit a figure of this width " * 3)
    assert drawn_beyond_canvas(fig) != [0, 0, 0, 0]


def _error_bars(ax):
    """{x: (low, high)} of every error bar of the axes."""
    bars = {}
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            (x,), (y,) = container.lines[0].get_data()
            ends = container.lines[2][0].get_segments()[0][:, 1] if container.lines[2] else (y, y)
            bars[round(float(x))] = (float(min(ends)), float(max(ends)), float(y))
    return bars


def _paired_problems(fig, runs, settings):
    """Where the figure's error bars differ from paired_differences' means and 95 % intervals."""
    rows, pooled = paired_differences(runs, settings)
    ax = fig.axes[0]
    bars = _error_bars(ax)
    expected = {x: row for x, row in enumerate(rows) if row["diffs"]}
    expected[len(rows)] = pooled
    problems = []
    if sorted(bars) != sorted(expected):
        problems.append(f"error bars at {sorted(bars)}, configurations with pairs at {sorted(expected)}")
    for x, row in expected.items():
        if x in bars:
            half = row["half"] or 0.0
            want = (row["mean"] - half, row["mean"] + half, row["mean"])
            if not np.allclose(bars[x], want, rtol=0, atol=1e-12):
                problems.append(f"bar {x}: {bars[x]}, paired_differences: {want}")
    for x, row in enumerate(rows):  # each seed's difference as a dot at its configuration
        dots = sorted(
            y for line in ax.get_lines() if line.get_marker() == "." for xd, y in line.get_xydata() if xd == x
        )
        if not np.allclose(dots, sorted(row["diffs"]), rtol=0, atol=1e-12):
            problems.append(f"dots at {x}: {dots}, differences {sorted(row['diffs'])}")
    return problems


def test_paired_figure_draws_each_configurations_mean_and_95_interval(study):
    runs, settings = study
    fig = study_figures.paired_figure(runs, settings)
    assert _paired_problems(fig, runs, settings) == []
    rows, _ = paired_differences(runs, settings)
    n_pairs = {"default": 3, "extended": 6}[settings["study"]]  # the extended no-BN lr 0.3 and 1 diverged
    assert len(_error_bars(fig.axes[0])) == n_pairs + 1 == sum(bool(r["diffs"]) for r in rows) + 1
    ax = fig.axes[0]
    assert "BN − no BN" in ax.get_ylabel() and "test accuracy" in ax.get_ylabel()
    assert ax.get_xlabel().startswith("hidden layers")
    assert any(
        np.all(np.asarray(line.get_ydata()) == 0) and len(set(line.get_xdata())) > 1
        for line in ax.get_lines()
    )
    notes = [t.get_text() for t in ax.texts if "diverged" in t.get_text()]
    assert len(notes) == len(rows) - n_pairs


def test_the_paired_check_sees_an_interval_of_one_sd(study, monkeypatch):
    """A figure drawn with ± 1 sd (as test_accuracy.png does) in place of the 95 % interval."""
    runs, settings = study

    def sd_instead(runs, settings):
        rows, pooled = paired_differences(runs, settings)
        for row in rows:
            if row["half"] is not None:
                row["half"] = float(np.std(row["diffs"], ddof=1))
        return rows, pooled

    monkeypatch.setattr(study_figures, "paired_differences", sd_instead)
    fig = study_figures.paired_figure(runs, settings)
    monkeypatch.undo()
    assert any("bar" in p for p in _paired_problems(fig, runs, settings))


def test_plot_results_writes_paired_differences_png(study, tmp_path):
    runs, settings = study
    paths = cbn.plot_results(os.fspath(RESULTS[settings["study"]]), os.fspath(tmp_path))
    assert "paired_differences.png" in study_figures.FIGURES[settings["study"]]
    written = tmp_path / "paired_differences.png"
    assert os.fspath(written) in paths
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("paired_differences.md", "test_accuracy.md", "lr_sweep.md"):  # the tables as committed
        if (tmp_path / name).exists():
            committed = RESULTS[settings["study"]].parent / name
            assert (tmp_path / name).read_text().split("\n", 1)[1] == committed.read_text().split("\n", 1)[1]


def test_paired_figure_of_one_seed_has_means_without_intervals(study):
    runs, settings = study
    settings = {**settings, "seeds": [42]}
    runs = [r for r in runs if r["seed"] == 42]
    fig = study_figures.paired_figure(runs, settings)
    assert _paired_problems(fig, runs, settings) == []
    assert all(low == high for low, high, _ in _error_bars(fig.axes[0]).values())
    assert "one seed" in fig.axes[0].get_title()
    assert drawn_beyond_canvas(fig) == [0, 0, 0, 0]
