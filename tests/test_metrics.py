"""The 2022-2023 editions' metrics: confusion_matrix and confusion_matrix_to_metrics in both trainers,
and the test_metrics every run writes to log.json with its confusion_matrix.png."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import PNG, REPO_ROOT
from test_cli import cli_env

import train_mlp_numpy as tm

torch = pytest.importorskip("torch")
import train_mlp_pytorch as tp  # noqa: E402

# 3 classes, 6 samples: true 0 0 1 1 2 2, predicted 0 1 1 1 0 1 (class 2 never predicted)
SCORES = np.eye(3)[[0, 1, 1, 1, 0, 1]] + 0.1
LABELS = np.array([0, 0, 1, 1, 2, 2])
MATRIX = np.array([[1, 1, 0], [0, 2, 0], [1, 1, 0]])


@pytest.mark.parametrize("trainer", [tm, tp], ids=["numpy", "pytorch"])
@pytest.mark.parametrize("targets", ["labels", "one_hot"])
def test_confusion_matrix_counts_rows_true_columns_predicted(trainer, targets):
    y = LABELS if targets == "labels" else np.eye(3)[LABELS]
    if trainer is tp:
        scores, y = torch.tensor(SCORES), torch.tensor(y)
    else:
        scores = SCORES
    matrix = trainer.confusion_matrix(scores, y)
    np.testing.assert_array_equal(matrix, MATRIX)
    assert matrix.sum() == len(LABELS) and np.trace(matrix) == 3


def test_confusion_matrix_of_a_batch_of_as_many_samples_as_classes():
    # S == C: a (3, 3) target matrix is one-hot targets (true 1, 1, 2), never mistaken for scores
    matrix = tm.confusion_matrix(np.eye(3), np.eye(3)[[1, 1, 2]])  # predicted 0, 1, 2
    np.testing.assert_array_equal(matrix, [[0, 0, 0], [1, 1, 0], [0, 0, 1]])


def test_metrics_by_hand():
    metrics = tm.confusion_matrix_to_metrics(MATRIX, beta=1.0)
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    np.testing.assert_allclose(metrics["precision"], [1 / 2, 2 / 4, 0.0])  # class 2: never predicted, 0/0
    np.testing.assert_allclose(metrics["recall"], [1 / 2, 2 / 2, 0 / 2])
    np.testing.assert_allclose(metrics["f1_beta"], [0.5, 2 * 0.5 * 1 / 1.5, 0.0])


@pytest.mark.parametrize("beta", [0.1, 1.0, 10.0])
def test_f_beta_against_its_definition_and_its_limits(beta):
    matrix = np.random.default_rng(int(beta * 10)).integers(1, 50, size=(10, 10))
    m = tm.confusion_matrix_to_metrics(matrix, beta)
    p, r = np.diag(matrix) / matrix.sum(axis=0), np.diag(matrix) / matrix.sum(axis=1)
    np.testing.assert_allclose(m["f1_beta"], (1 + beta**2) * p * r / (beta**2 * p + r), rtol=1e-12)
    # small beta weighs precision, large beta recall
    target = p if beta < 1 else r if beta > 1 else 2 * p * r / (p + r)
    np.testing.assert_allclose(m["f1_beta"], target, rtol=0.02 if beta != 1 else 1e-12)


def test_an_absent_and_never_predicted_class_is_zero_without_a_warning():
    with np.errstate(all="raise"):  # any 0/0 computed would raise here
        m = tm.confusion_matrix_to_metrics(np.array([[3, 0], [0, 0]]))
    assert m["precision"][1] == m["recall"][1] == m["f1_beta"][1] == 0.0


def test_both_trainers_compute_the_metrics_alike():
    assert tp.confusion_matrix_to_metrics is tm.confusion_matrix_to_metrics


@pytest.mark.parametrize("script", ["train_mlp_numpy.py", "train_mlp_pytorch.py"])
def test_each_run_writes_test_metrics_and_the_confusion_figure(script, tmp_path, data_dir):
    out = tmp_path / "run"
    args = [
        sys.executable,
        script,
        "--hidden_dims",
        "8",
        "--epochs",
        "1",
        "--batch_size",
        "50",
        "--seed",
        "3",
    ]
    args += ["--data_dir", data_dir, "--output_dir", os.fspath(out), "--no_progress"]
    subprocess.run(args, cwd=REPO_ROOT, env=cli_env(), check=True, capture_output=True)
    log = json.loads((out / "log.json").read_text())
    metrics = log["test_metrics"]
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 100  # every test image once
    assert metrics["accuracy"] == pytest.approx(log["test_accuracy"])
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert set(metrics["f1_beta"]) == {"0.1", "1", "10"}
    expected = tm.confusion_matrix_to_metrics(matrix, 10.0)
    np.testing.assert_allclose(metrics["f1_beta"]["10"], expected["f1_beta"])
    np.testing.assert_allclose(metrics["recall"], expected["recall"])
    assert len(metrics["classes"]) == 10
    assert (out / "confusion_matrix.png").read_bytes().startswith(PNG)


def test_the_confusion_figure_names_the_classes_and_counts_every_cell():
    from support import plots

    classes = [f"class {i}" for i in range(3)]
    fig = plots.confusion_matrix_figure(MATRIX, classes, "title")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for v in MATRIX.ravel())
