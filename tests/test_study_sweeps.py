"""The batch-size and weight-scale studies: what they plan, that their runs train what they say, and
their table and figure from the runs alone."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import write_fake_cifar

import compare_batch_norm as cbn
from support import study_sweeps
from support.study_config import planned_runs, study_settings, train_arguments


def test_batch_size_study_plans_every_size_norm_and_seed_with_a_linear_lr():
    runs = planned_runs(study_settings("batch_size"))
    assert len(runs) == 6 * 3 * 3
    assert {r["norm"] for r in runs} == {"none", "batch", "layer"}
    for run in runs:
        assert run["lr"] == pytest.approx(0.1 * run["batch_size"] / 128)
        assert run["hidden_dims"] == [512, 256, 128] and run["epochs"] == 4
    layer = next(r for r in runs if r["norm"] == "layer")
    assert (
        train_arguments(layer)["use_layer_norm"] is True and train_arguments(layer)["use_batch_norm"] is False
    )


def test_init_scale_study_plans_seven_log_spaced_scales():
    runs = planned_runs(study_settings("init_scale"))
    scales = sorted({r["init_scale"] for r in runs})
    assert len(runs) == 7 * 2 * 3 and len(scales) == 7
    assert scales[0] == 0.01 and scales[-1] == 10.0
    np.testing.assert_allclose(np.diff(np.log10(scales)), 0.5, atol=0.002)  # half decades
    assert all("init_scale" not in train_arguments(r) for r in runs if r["init_scale"] == 1.0)
    assert {train_arguments(r).get("init_scale") for r in runs} == {None, *[s for s in scales if s != 1.0]}


def test_the_2021_study_still_plans_its_six_runs_with_the_same_keys():
    runs = planned_runs(study_settings("default"))
    assert len(runs) == 6 and all(r["init_scale"] == 1.0 and r["batch_size"] == 128 for r in runs)
    assert all(set(train_arguments(r)) == {"hidden_dims", "lr", "use_batch_norm", "batch_size", "epochs",
                                           "seed", "batch_norm"} for r in runs)  # fmt: skip


def test_init_scale_reaches_the_weights():
    import mlp_pytorch

    torch.manual_seed(0)
    base = mlp_pytorch.MLP(3072, [256], 10)
    torch.manual_seed(0)
    scaled = mlp_pytorch.MLP(3072, [256], 10, init_scale=0.1)
    for a, b in zip(base.linears(), scaled.linears(), strict=True):
        torch.testing.assert_close(b.weight, 0.1 * a.weight)


@pytest.mark.parametrize("study", ["batch_size", "init_scale"])
def test_a_tiny_sweep_trains_and_draws(study, tmp_path):
    data_dir = os.fspath(write_fake_cifar(tmp_path / "data", n_per_batch=1100, seed=0, n_test=100).data_dir)
    field = {"batch_size": "batch_sizes", "init_scale": "init_scales"}[study]
    values = {"batch_size": [16, 64], "init_scale": [0.1, 1.0]}[study]
    results_path = tmp_path / "r.json"
    settings = {"architectures": [[16]], "seeds": [1, 2], "epochs": 1, field: values}
    results = cbn.train_models(os.fspath(results_path), data_dir=data_dir, progress=False, study=study,
                               device="cpu", **settings)  # fmt: skip
    norms = study_settings(study)["norms"]
    assert len(results["runs"]) == 2 * 2 * len(norms)
    for run in results["runs"]:
        assert {
            "norm",
            "batch_size",
            "init_scale",
            "seed",
            "test_accuracy",
            "val_accuracy",
            "diverged",
        } <= set(run)
    paths = cbn.plot_results(os.fspath(results_path))
    assert sorted(map(os.path.basename, paths)) == sorted([f"{study}.png", f"{study}.md"])
    table = (tmp_path / f"{study}.md").read_text()
    assert table.startswith("Made by `python compare_batch_norm.py --study " + study)
    rows = study_sweeps.sweep_rows(json.loads(results_path.read_text())["runs"], results["settings"])
    for row in rows:  # each normalised arm's difference is its seeds' paired difference
        if row["norm"] != "none" and len(row["diffs"]) == 2:
            base = [r for r in results["runs"] if r["norm"] == "none" and r[study] == row["value"]]
            mine = [r for r in results["runs"] if r["norm"] == row["norm"] and r[study] == row["value"]]
            by_seed = {r["seed"]: r["test_accuracy"] for r in base}
            expected = np.mean([r["test_accuracy"] - by_seed[r["seed"]] for r in mine])
            assert row["diff"] == pytest.approx(expected)
            assert f"{row['diff']:+.4f}" in table


def test_the_figure_marks_diverged_runs_off_the_data():
    settings = study_settings("init_scale", seeds=[1, 2], architectures=[[16]], init_scales=[0.1, 10.0])
    runs = []
    for run in planned_runs(settings):
        diverged = run["init_scale"] == 10.0 and run["norm"] == "none"
        runs.append(
            {**run, "diverged": diverged, "test_accuracy": None if diverged else 0.4 + 0.01 * run["seed"]}
        )
    fig = study_sweeps.sweep_figure(runs, settings)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any("diverged" in t for t in texts)
    low = ax.get_ylim()[0]
    crosses = [line for line in ax.lines if line.get_marker() == "x"]
    assert crosses, "no diverged marker"
    assert min(line.get_ydata()[0] for line in crosses) < 0.1  # in the strip, in axes fraction
    assert low < 0.41  # the strip lies below the lowest accuracy drawn (0.41)
