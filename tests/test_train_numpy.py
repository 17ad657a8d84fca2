"""train_mlp_numpy.py and the support package: accuracy, evaluation, train() (seeds, batch norm, divergence),
the command line, the shared checks, atomic output and the figures.

Everything runs on made-up CIFAR-10 batches (tests/conftest.py). train() splits off get_cifar10's
default 5000 validation images, so the fake sets hold 5 x 1100 training images: 500 left to train
on (15 batches of 32 per epoch) and 100 test images. Two sets are written once for the module: one
of random labels (nothing to learn, so validation accuracy wanders and the best epoch need not be
the last) and one whose labels can be read off the pixels (training must learn them).

Every command line run gets CIFAR10_URL pointing at a closed port on 127.0.0.1, so no test can
reach the network; the bad-input runs are started together and checked one by one. The command-line
cases both trainers share (data dir default, refusals before training, divergence, a failed save,
--no_progress) are in tests/test_cli.py.
"""

import copy
import errno
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import COMMON_BAD_INPUTS, N_TRAIN, PNG, REPO_ROOT, check_train_results
from test_cli import cli_env

import cifar10_utils
import optim
import train_mlp_numpy as tm
from mlp_numpy import MLP
from modules import BatchNormModule, CrossEntropyModule
from support import checks, cli, output, plots, runlog

HIDDEN, LR, BATCH, EPOCHS = [16], 0.1, 32, 2
BATCHES_PER_EPOCH = N_TRAIN // BATCH  # 15, the last partial batch is dropped
# With this seed the first epoch has the better validation accuracy on the random-label set, so
# returning the last epoch's model instead of the best one changes the numbers checked below.
SEED = 7
SCRIPT = "train_mlp_numpy.py"
OUTPUT_FILES = {"log.json", "loss_curve.png", "first_layer_weights.png", "confusion_matrix.png", "model.npz"}


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def loaders(data_dir):
    return cifar10_utils.get_dataloader(cifar10_utils.get_cifar10(data_dir), 1000, return_numpy=True, seed=0)


@pytest.fixture(scope="module")
def trained(data_dir):
    """train() once for the module: (model, val_accuracies, test_accuracy, logging_info)."""
    return tm.train(HIDDEN, LR, BATCH, EPOCHS, SEED, data_dir, progress=False)


def start_cli(args, cwd=REPO_ROOT):
    return subprocess.Popen(
        [sys.executable, os.fspath(REPO_ROOT / SCRIPT), *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def tiny_args(data_dir, output_dir):
    return [
        "--hidden_dims",
        *map(str, HIDDEN),
        "--lr",
        str(LR),
        "--batch_size",
        str(BATCH),
        "--epochs",
        str(EPOCHS),
        "--seed",
        str(SEED),
        "--data_dir",
        os.fspath(data_dir),
        "--output_dir",
        os.fspath(output_dir),
        "--no_progress",
    ]


def weights(model):
    """Every parameter of the model (linear and batch-norm layers), in layer order."""
    return [p for layer in model.layers for p in getattr(layer, "params", {}).values()]


# ---------------------------------------------------------------- accuracy and evaluate_model


def test_accuracy_on_hand_made_predictions():
    predictions = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [-1.0, -3.0, -2.0]])
    assert tm.accuracy(predictions, np.array([1, 0, 2, 0])) == 1.0
    assert tm.accuracy(predictions, np.array([1, 0, 0, 1])) == 0.5
    assert tm.accuracy(predictions, np.array([0, 1, 0, 1])) == 0.0
    result = tm.accuracy(predictions, np.array([1, 1, 2, 0]))
    assert result == 0.75 and isinstance(result, float)


def test_accuracy_takes_one_hot_and_soft_targets():
    predictions = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [-1.0, -3.0, -2.0]])
    labels = np.array([1, 1, 2, 0])
    assert tm.accuracy(predictions, np.eye(3)[labels]) == 0.75  # one-hot, as the skeleton documents
    soft = 0.7 * np.eye(3)[labels] + 0.1  # label smoothing: each row's argmax is still its label
    assert tm.accuracy(predictions, soft) == 0.75
    assert tm.accuracy(predictions, list(labels)) == 0.75  # a plain list of labels too


def test_accuracy_when_samples_equal_classes():
    """S == C: the target matrix has the predictions' shape, so only its ndim tells one-hot from labels."""
    rng = np.random.default_rng(0)
    predictions = rng.normal(size=(10, 10))
    predicted = predictions.argmax(axis=1)
    labels = predicted.copy()
    labels[:3] = (labels[:3] + 1) % 10  # 7 of 10 right
    assert tm.accuracy(predictions, labels) == 0.7
    assert tm.accuracy(predictions, np.eye(10)[labels]) == 0.7
    # a wrong reading of the (10, 10) one-hot matrix, e.g. as scores compared row by row, would not give 0.7
    assert tm.accuracy(predictions, np.eye(10)[predicted]) == 1.0


@pytest.mark.parametrize(
    "predictions, targets",
    [(np.zeros((4, 3)), np.zeros((4, 3, 1))), (np.zeros((4, 3)), np.zeros(5, dtype=int)), (np.zeros(4), [0])],
    ids=["targets_3d", "length_mismatch", "predictions_1d"],
)
def test_accuracy_refuses_shapes_it_would_misread(predictions, targets):
    with pytest.raises(ValueError):
        tm.accuracy(predictions, targets)


class LookupModel:
    """Predicts the class stored for each sample; sample i is the row whose first feature is i.
    Records the mode it was in at each forward."""

    def __init__(self, predicted, training=True):
        self.predicted, self.cleared, self.training, self.modes = np.asarray(predicted), 0, training, []

    def train(self, mode=True):
        self.training = mode

    def eval(self):
        self.train(False)

    def forward(self, x):
        self.modes.append(self.training)
        idx = np.asarray(x).reshape(len(x), -1)[:, 0].astype(int)
        return np.eye(10)[self.predicted[idx]]

    def clear_cache(self):
        self.cleared += 1


def batches(x, y, size):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def test_evaluate_model_weights_batches_by_their_size():
    # 10 samples in batches of 7 and 3: 7/7 and 0/3 right is 0.7 overall (a mean over batches gives 0.5)
    x = np.arange(10, dtype=np.float64)[:, None] * np.ones((1, 4))
    y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    model = LookupModel([0, 1, 2, 3, 4, 5, 6, 0, 0, 0])
    assert tm.evaluate_model(model, batches(x, y, 7)) == 0.7
    assert tm.evaluate_model(model, batches(x, y, 1)) == 0.7
    assert tm.evaluate_model(model, batches(x, y, 10)) == 0.7
    assert model.cleared >= 1  # the forward caches are not kept after evaluation


@pytest.mark.parametrize("training", [True, False], ids=["from_train_mode", "from_eval_mode"])
def test_evaluate_model_runs_in_eval_mode_and_restores_the_mode(training):
    x, y = np.arange(10.0)[:, None], np.arange(10)
    model = LookupModel(np.arange(10), training=training)
    assert tm.evaluate_model(model, batches(x, y, 4)) == 1.0
    assert model.modes == [False, False, False] and model.training is training

    def broken_batches():
        yield x, y
        raise OSError("the loader failed")

    model.modes = []
    with pytest.raises(OSError):
        tm.evaluate_model(model, broken_batches())
    assert model.modes == [False] and model.training is training  # restored when evaluation fails too


def test_evaluate_model_same_for_any_batch_size(loaders):
    model = MLP(3072, [16], 10, rng=np.random.default_rng(0))
    split = loaders["validation"].dataset
    x, y = cifar10_utils.normalize(split.images), split.labels
    expected = np.mean(np.argmax(model.forward(x), axis=1) == y)
    by_7 = cifar10_utils.DataLoader(split, 7, return_numpy=True)  # 5000 = 714 x 7 + 2
    assert tm.evaluate_model(model, by_7) == tm.evaluate_model(model, loaders["validation"]) == expected


def test_evaluate_model_uses_batch_norm_running_statistics(loaders):
    """In eval mode each sample's prediction is its own: the batch size cannot change the accuracy."""
    model = MLP(3072, [16], 10, use_batch_norm=True, rng=np.random.default_rng(0))
    batch_norm = model.layers[1]
    batch_norm.running_mean[:] = 0.5  # statistics unlike any batch's, so the two modes differ
    batch_norm.running_var[:] = 4.0
    split = loaders["validation"].dataset
    x, y = cifar10_utils.normalize(split.images), split.labels
    model.eval()
    expected = np.mean(np.argmax(model.forward(x), axis=1) == y)
    model.train()
    by_7 = cifar10_utils.DataLoader(split, 7, return_numpy=True)
    assert tm.evaluate_model(model, by_7) == tm.evaluate_model(model, loaders["validation"]) == expected
    assert model.training  # back in training mode
    assert np.all(batch_norm.running_mean == 0.5)  # evaluation leaves the running statistics alone


# ---------------------------------------------------------------- SGD, seeds and the model train() builds


def test_sgd_step_updates_every_module_with_params_including_batch_norm():
    model = MLP(6, [4], 3, use_batch_norm=True, rng=np.random.default_rng(0))
    before = copy.deepcopy(weights(model))
    for layer in model.layers:
        for name in getattr(layer, "grads", {}):
            layer.grads[name] = np.full_like(layer.params[name], 2.0)
    optim.SGD(model.layers, lr=0.25).step()  # the trainer's update with its defaults
    after = weights(model)
    assert len(after) == 6  # two Linear layers and the batch norm, each a weight and a bias
    for b, a in zip(before, after, strict=True):
        assert np.array_equal(a, b - 0.5)


class RecordingMLP(MLP):
    """The trainer's MLP, keeping a copy of its weights as initialised."""

    built = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingMLP.built.append((args, kwargs, copy.deepcopy(weights(self))))


@pytest.fixture
def recording_mlp(monkeypatch):
    RecordingMLP.built = []
    monkeypatch.setattr(tm, "MLP", RecordingMLP)
    return RecordingMLP.built


def test_weights_and_shuffling_draw_from_independent_streams(recording_mlp, data_dir):
    """The weights come from the first of SeedSequence(seed).spawn(2), the shuffling from the second,
    and the same seed gives the same first layer with and without batch norm."""
    tm.train(HIDDEN, LR, N_TRAIN, 1, SEED, data_dir, progress=False, log_epochs=False)
    tm.train(HIDDEN, LR, N_TRAIN, 1, SEED, data_dir, use_batch_norm=True, progress=False, log_epochs=False)
    init_ss, shuffle_ss = np.random.SeedSequence(SEED).spawn(2)
    expected = MLP(3072, HIDDEN, 10, dtype=np.float32, rng=np.random.default_rng(init_ss))
    (_, kwargs, plain), (_, kwargs_bn, with_bn) = recording_mlp
    assert kwargs["use_batch_norm"] is False and kwargs_bn["use_batch_norm"] is True
    assert all(np.array_equal(a, b) for a, b in zip(plain, weights(expected), strict=True))
    linear_bn = [with_bn[0], with_bn[1], with_bn[4], with_bn[5]]  # batch norm's gamma, beta between
    assert all(np.array_equal(a, b) for a, b in zip(plain, linear_bn, strict=True))
    # the first weights are not the numbers a single default_rng(seed) would also shuffle with
    shared = MLP(3072, HIDDEN, 10, dtype=np.float32, rng=np.random.default_rng(SEED))
    assert not np.array_equal(plain[0], weights(shared)[0])


def test_train_builds_plain_row_major_float32_weights(trained):
    """No memory-layout trick reaches the user: the weights are ordinary C-ordered arrays."""
    for lin in trained[0].linears:
        assert lin.params["weight"].flags.c_contiguous and lin.params["weight"].dtype == np.float32
        assert not hasattr(lin, "column_major")


# ---------------------------------------------------------------- train()


def test_train_returns_the_documented_results(trained):
    model, val_accuracies, test_accuracy, info = trained
    assert isinstance(model, MLP)
    assert [lin.params["weight"].shape for lin in model.linears] == [(16, 3072), (10, 16)]
    check_train_results(val_accuracies, test_accuracy, info, EPOCHS, BATCHES_PER_EPOCH)
    assert info["diverged"] is False and "diverged_at" not in info
    assert info["batches_per_epoch"] == BATCHES_PER_EPOCH
    assert model.training is False  # returned for predictions, in eval mode


def test_best_model_holds_no_cached_arrays(trained):
    kept = {"params", "grads", "running_mean", "running_var"}  # what a module holds besides its caches
    for layer in trained[0].layers:
        cached = [k for k, v in vars(layer).items() if k not in kept and isinstance(v, np.ndarray)]
        assert cached == [], f"{layer!r} kept {cached} after training"


def test_returned_model_is_the_best_by_validation(trained, loaders):
    model, val_accuracies, test_accuracy, info = trained
    assert info["best_epoch"] == 1 < EPOCHS  # so the last epoch's model would give other numbers
    assert tm.evaluate_model(model, loaders["validation"]) == max(val_accuracies)
    assert tm.evaluate_model(model, loaders["test"]) == test_accuracy


@pytest.mark.parametrize("use_batch_norm", [False, True], ids=["plain", "batch_norm"])
def test_train_learns_a_learnable_set(learnable_dir, use_batch_norm):
    # lr 0.01: the 255-valued blocks are far from the normalized range, 0.1 overshoots on this set
    _, val_accuracies, test_accuracy, info = tm.train(
        [32], 0.01, BATCH, 2, 0, learnable_dir, use_batch_norm=use_batch_norm, progress=False
    )
    assert info["train_loss"][-1] < info["train_loss"][0] / 2
    assert info["train_accuracy"][-1] > 0.9
    assert max(val_accuracies) > 0.9 and test_accuracy > 0.9


def test_train_with_batch_norm_trains_gamma_beta_and_running_statistics(data_dir):
    model, val_accuracies, test_accuracy, info = tm.train(
        HIDDEN, LR, BATCH, EPOCHS, SEED, data_dir, use_batch_norm=True, progress=False
    )
    check_train_results(val_accuracies, test_accuracy, info, EPOCHS, BATCHES_PER_EPOCH)
    (batch_norm,) = [layer for layer in model.layers if isinstance(layer, BatchNormModule)]
    assert batch_norm.params["weight"].shape == (1, 16)
    assert not np.all(batch_norm.params["weight"] == 1) and not np.all(batch_norm.params["bias"] == 0)
    assert not np.all(batch_norm.running_mean == 0) and not np.all(batch_norm.running_var == 1)
    assert model.training is False


def test_same_seed_same_numbers_other_seed_other_numbers(trained, data_dir):
    model, val_accuracies, test_accuracy, info = trained
    model2, val2, test2, info2 = tm.train(HIDDEN, LR, BATCH, EPOCHS, SEED, data_dir, progress=False)
    assert info2["batch_loss"] == info["batch_loss"]
    assert val2 == val_accuracies and test2 == test_accuracy
    assert all(np.array_equal(a, b) for a, b in zip(weights(model), weights(model2), strict=True))

    model3, _, _, info3 = tm.train(HIDDEN, LR, BATCH, EPOCHS, SEED + 1, data_dir, progress=False)
    assert info3["batch_loss"] != info["batch_loss"]
    assert not np.array_equal(weights(model)[0], weights(model3)[0])


def test_batch_size_may_equal_the_training_split_but_not_exceed_it(data_dir):
    _, _, _, info = tm.train(HIDDEN, LR, N_TRAIN, 1, SEED, data_dir, progress=False)
    assert len(info["batch_loss"]) == 1
    with pytest.raises(ValueError, match="batch_size"):
        tm.train(HIDDEN, LR, N_TRAIN + 1, 1, SEED, data_dir, progress=False)


@pytest.mark.parametrize(
    "hidden_dims, lr, batch_size, epochs",
    [
        ([16], 0.0, 32, 1),
        ([16], -1.0, 32, 1),
        ([16], 0.1, 0, 1),
        ([16], 0.1, 32, 0),
        ([16, 0], 0.1, 32, 1),
        ([10**9], 0.1, 32, 1),
    ],
    ids=["lr_zero", "lr_negative", "batch_size_zero", "epochs_zero", "hidden_zero", "hidden_too_large"],
)
def test_bad_settings_raise_before_reading_data(hidden_dims, lr, batch_size, epochs, tmp_path):
    with pytest.raises(ValueError):
        tm.train(hidden_dims, lr, batch_size, epochs, SEED, os.fspath(tmp_path / "nothing"), progress=False)
    assert not (tmp_path / "nothing").exists()


def test_log_epochs_prints_one_line_per_epoch_without_bars(data_dir, capsys):
    tm.train(HIDDEN, LR, BATCH, EPOCHS, SEED, data_dir, progress=False)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line[:10] for line in lines] == ["epoch  1/2", "epoch  2/2"] and captured.err == ""
    tm.train(HIDDEN, LR, BATCH, 1, SEED, data_dir, progress=False, log_epochs=False)
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------- divergence


def test_loss_is_finite_sees_through_the_clamp():
    probs = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    assert runlog.loss_is_finite(0.35, probs, np.array([0, 1]))  # zeros elsewhere do not matter
    assert not runlog.loss_is_finite(35.0, probs, np.array([2, 1]))  # -log 0: infinite without the clamp
    assert not runlog.loss_is_finite(math.nan, probs, np.array([0, 1]))
    assert not runlog.loss_is_finite(math.inf, probs, np.array([0, 1]))


def test_huge_lr_diverges_in_the_first_epoch(data_dir):
    """lr 1e6: the logits blow up at the first update and the second batch's loss is not finite."""
    model, val_accuracies, test_accuracy, info = tm.train(
        HIDDEN, 1e6, BATCH, EPOCHS, SEED, data_dir, progress=False
    )
    assert info["diverged"] is True and info["diverged_at"] == {"epoch": 1, "step": 2}
    assert val_accuracies == [] and test_accuracy is None and "best_epoch" not in info
    assert len(info["batch_loss"]) == 2 and math.isfinite(info["batch_loss"][0])
    assert not math.isfinite(info["batch_loss"][1])
    assert isinstance(model, MLP)  # the model as it was when the loss blew up
    json.dumps(output._finite(info), allow_nan=False)  # the log can still be written


class LossBecomesNaN(CrossEntropyModule):
    """The cross-entropy, but not a number from the `at`-th call of forward on."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def forward(self, x, y):
        self.calls += 1
        return math.nan if self.calls >= self.at else super().forward(x, y)


def test_divergence_after_an_epoch_keeps_the_best_model_so_far(data_dir, loaders, monkeypatch):
    step = 3
    monkeypatch.setattr(tm, "CrossEntropyModule", lambda: LossBecomesNaN(BATCHES_PER_EPOCH + step))
    model, val_accuracies, test_accuracy, info = tm.train(
        HIDDEN, LR, BATCH, EPOCHS + 1, SEED, data_dir, progress=False
    )
    assert info["diverged"] is True and info["diverged_at"] == {"epoch": 2, "step": step}
    assert len(val_accuracies) == 1 and info["best_epoch"] == 1
    assert len(info["batch_loss"]) == BATCHES_PER_EPOCH + step  # the unfinished epoch's losses kept
    assert math.isnan(info["batch_loss"][-1]) or math.isinf(info["batch_loss"][-1])
    assert len(info["train_loss"]) == len(info["epoch_time"]) == 1  # per-epoch lists: finished epochs only
    assert tm.evaluate_model(model, loaders["validation"]) == val_accuracies[0]
    assert tm.evaluate_model(model, loaders["test"]) == test_accuracy
    assert all(np.isfinite(w).all() for w in weights(model))


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def cli_run(data_dir, tmp_path_factory):
    """The tiny run on the command line, and one with --use_batch_norm and the default output
    directory, started in an empty working directory: (result, output_dir) each."""
    out = tmp_path_factory.mktemp("cli") / "run"
    cwd = tmp_path_factory.mktemp("cwd")
    args = tiny_args(data_dir, out)
    bn_args = [*args[: args.index("--output_dir")], *args[args.index("--output_dir") + 2 :]]
    procs = [
        start_cli(args),
        start_cli([*bn_args, "--use_batch_norm"], cwd=cwd),
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    results = [
        subprocess.CompletedProcess(p.args, p.returncode, *o) for p, o in zip(procs, outputs, strict=True)
    ]
    return (results[0], out), (results[1], cwd / "results" / "mlp_numpy_batch_norm")


def test_cli_writes_log_curves_and_model(cli_run, trained):
    result, out = cli_run[0]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES)  # nothing else, no .*.tmp left over
    model, val_accuracies, test_accuracy, info = trained  # the same settings, in this process

    log = json.loads((out / "log.json").read_text())
    assert {"args", "logging_info", "test_accuracy", "diverged"} <= set(log)
    args = log["args"]
    assert (args["hidden_dims"], args["lr"], args["batch_size"], args["epochs"], args["seed"]) == (
        HIDDEN,
        LR,
        BATCH,
        EPOCHS,
        SEED,
    )
    assert args["use_batch_norm"] is False and log["diverged"] is False
    assert log["test_accuracy"] == test_accuracy
    assert log["logging_info"]["batch_loss"] == info["batch_loss"]
    assert log["logging_info"]["val_accuracy"] == val_accuracies
    assert log["logging_info"]["best_epoch"] == info["best_epoch"]

    for name in ("loss_curve.png", "first_layer_weights.png"):
        png = (out / name).read_bytes()
        assert png.startswith(PNG) and len(png) > 1000, name

    # keyed by the index in model.layers (Linear, ReLU, Linear, SoftMax), like the PyTorch state_dict
    with np.load(out / "model.npz") as saved:
        assert set(saved.files) == {"0.weight", "0.bias", "2.weight", "2.bias"}
        assert saved["0.weight"].shape == (16, 3072) and saved["0.bias"].shape == (1, 16)
        assert saved["2.weight"].shape == (10, 16) and saved["2.bias"].shape == (1, 10)
        for i, layer in enumerate(model.layers):  # the best model, not the last one
            for name, value in getattr(layer, "params", {}).items():
                assert np.array_equal(saved[f"{i}.{name}"], value)


def test_cli_with_batch_norm_saves_its_parameters_and_statistics_in_its_own_directory(cli_run):
    result, out = cli_run[1]
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES)
    assert json.loads((out / "log.json").read_text())["args"]["use_batch_norm"] is True
    with np.load(out / "model.npz") as saved:  # Linear, BatchNorm, ReLU, Linear, SoftMax
        assert set(saved.files) == {
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "3.weight",
            "3.bias",
        }
        assert saved["1.running_var"].shape == (1, 16)


def test_cli_prints_a_line_per_epoch_then_the_test_accuracy(cli_run):
    result, out = cli_run[0]
    lines = result.stdout.splitlines()
    assert len(lines) == EPOCHS + 1, result.stdout
    assert all(line.startswith(f"epoch {e + 1:2d}/{EPOCHS}:") for e, line in enumerate(lines[:-1]))
    log = json.loads((out / "log.json").read_text())
    assert lines[-1].startswith(f"test accuracy {log['test_accuracy']:.4f}")
    assert os.fspath(out) in lines[-1]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# name -> (extra arguments, a fragment of the error line); placeholders filled in by bad_runs
BAD_INPUTS = {
    **COMMON_BAD_INPUTS,
    "lr_not_a_number": (["--lr", "abc"], "--lr"),
    "hidden_dims_negative": (["--hidden_dims", "-5"], "hidden"),
    "unknown_flag": (["--hidden_layers", "3"], "unrecognized"),
    "corrupt_data_batch": (["--data_dir", "{corrupt}"], "data_batch_1"),
    "missing_data_unreachable_url": (["--data_dir", "{missing}"], "cannot download"),
    "data_dir_is_a_file": (["--data_dir", "{a_file}"], "a_file"),
    "lr_infinite": (["--lr", "inf"], "lr"),
    "output_dir_is_a_file": ([], "a_file"),
}


@pytest.fixture(scope="module")
def bad_runs(data_dir, tmp_path_factory):
    """Every bad-input run, started at once: name -> (Popen, output_dir, data_dir)."""
    root = tmp_path_factory.mktemp("bad")
    corrupt = root / "corrupt"
    shutil.copytree(data_dir, corrupt)
    _truncate(corrupt / "cifar-10-batches-py" / "data_batch_1")
    a_file = root / "a_file"
    a_file.write_bytes(b"keep me")
    paths = {"corrupt": corrupt, "missing": root / "missing", "a_file": a_file}
    runs = {}
    for name, (extra, _) in BAD_INPUTS.items():
        out = a_file if name == "output_dir_is_a_file" else root / f"out_{name}"
        extra = [a.format(**paths) for a in extra]
        data = extra[extra.index("--data_dir") + 1] if "--data_dir" in extra else data_dir
        runs[name] = (start_cli([*tiny_args(data_dir, out), "--epochs", "1", *extra]), out, data)
    yield runs
    for proc, _, _ in runs.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize(
    "name",
    list(BAD_INPUTS),
)
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(name, bad_runs):
    proc, out, data = bad_runs[name]
    stdout, stderr = proc.communicate(timeout=300)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 2, stderr
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"{SCRIPT}: error:"), stderr
    assert BAD_INPUTS[name][1] in stderr
    assert stdout == ""
    if name == "output_dir_is_a_file":
        assert out.read_bytes() == b"keep me"
    else:
        assert not os.path.exists(out)
    if name == "missing_data_unreachable_url":  # the failed download leaves no data, no archive, no .part
        assert not os.path.exists(data)


# ---------------------------------------------------------------- atomic output


class Boom(Exception):
    pass


def failing_writer(exc=Boom):
    def write(f):
        f.write(b"half of a new ")
        raise exc("disk full")

    return write


def test_run_cli_freezes_the_objects_of_the_imports_and_after_main_succeeded(monkeypatch, capsys):
    frozen = []
    monkeypatch.setattr(cli.gc, "freeze", lambda: frozen.append(True))
    cli.run_cli(lambda: frozen.append("main"))
    assert frozen == [True, "main", True]

    def bad_main():
        raise ValueError("no good")

    with pytest.raises(SystemExit) as exit_info:
        cli.run_cli(bad_main)
    assert exit_info.value.code == 2 and frozen == [True, "main", True, True]  # no freeze after a failure
    assert capsys.readouterr().err.endswith("error: no good\n")

    cli.run_cli(lambda: frozen.append("inside pytest"), freeze_gc=False)
    assert frozen == [True, "main", True, True, "inside pytest"]


def test_atomic_write_writes_the_file(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    output.atomic_write(os.fspath(path), lambda f: f.write(b"complete"))
    assert path.read_bytes() == b"complete"
    assert os.listdir(path.parent) == ["f.bin"]


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_atomic_write_failing_midway_leaves_no_file(tmp_path, exc):
    path = tmp_path / "f.bin"
    with pytest.raises(exc):
        output.atomic_write(os.fspath(path), failing_writer(exc))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_atomic_write_failing_midway_keeps_the_old_file(tmp_path, exc):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old, complete content")
    with pytest.raises(exc):
        output.atomic_write(os.fspath(path), failing_writer(exc))
    assert path.read_bytes() == b"old, complete content"
    assert os.listdir(tmp_path) == ["f.bin"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_respects_the_umask(tmp_path, umask, mode):
    """The file reads like one made by open(): not mkstemp's 0600 whatever the umask."""
    old = os.umask(umask)
    try:
        output.atomic_write(os.fspath(tmp_path / "f.bin"), lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_atomic_write_all_renames_nothing_until_every_file_is_written(tmp_path, exc):
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(b"old first")
    second.write_bytes(b"old second")
    with pytest.raises(exc):
        output.atomic_write_all(
            {os.fspath(first): lambda f: f.write(b"new first"), os.fspath(second): failing_writer(exc)}
        )
    assert (first.read_bytes(), second.read_bytes()) == (b"old first", b"old second")
    assert sorted(os.listdir(tmp_path)) == ["first.bin", "second.bin"]


RUN_ARGS = {"framework": "NumPy", "hidden_dims": [16], "lr": 0.1, "batch_size": 32, "seed": 1}


def fake_logging_info(loss):
    info = runlog.new_logging_info()
    runlog.log_epoch(info, [loss, loss], 3, 4, 0.5, 1.0)
    info["best_epoch"] = 1
    return info


def test_save_run_interrupted_while_plotting_leaves_the_earlier_run_whole(tmp_path, monkeypatch):
    """The model is written first and the plot takes longest: an interrupt there must not
    leave the new model beside the earlier run's log."""
    args = {"framework": "NumPy", "hidden_dims": [16], "lr": 0.1, "batch_size": 32, "seed": 1}
    args["output_dir"] = os.fspath(tmp_path)
    output.save_run(args, fake_logging_info(2.0), 0.25, lambda f: f.write(b"old"), model_name="model.bin")
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    assert set(before) == {"model.bin", "loss_curve.png", "log.json"}

    monkeypatch.setattr(output, "png_writer", lambda fig: failing_writer(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        output.save_run(args, fake_logging_info(1.0), 0.5, lambda f: f.write(b"new"), model_name="model.bin")
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def test_atomic_write_all_refuses_a_directory_in_place_of_a_file_before_writing_any(tmp_path):
    (tmp_path / "log.json").write_bytes(b"old log")
    (tmp_path / "loss_curve.png").mkdir()
    writers = {
        os.fspath(tmp_path / name): lambda f: f.write(b"new") for name in ("log.json", "loss_curve.png")
    }
    with pytest.raises(ValueError, match="loss_curve.png"):
        output.atomic_write_all(writers)
    assert (tmp_path / "log.json").read_bytes() == b"old log"
    assert sorted(os.listdir(tmp_path)) == ["log.json", "loss_curve.png"]


def test_run_cli_interrupt_is_one_line_exit_130(capsys):
    def interrupted_main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        cli.run_cli(interrupted_main, freeze_gc=False)
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("error: interrupted (no file is left half-written)\n"), err


@pytest.mark.parametrize("kind", ["numpy", "cuda"])
def test_run_cli_out_of_memory_is_one_line_exit_2(kind, capsys):
    """Memory that runs out although check_hyperparameters let the sizes pass (its bound is a lower
    one, and knows no `ulimit -v` or GPU limit): one line, exit 2, not a MemoryError traceback."""
    if kind == "numpy":
        error = MemoryError(
            "Unable to allocate 4.58 GiB for an array with shape (200000, 3072) and data type float64"
        )
        reason = str(error)
    else:
        torch = pytest.importorskip("torch")
        error = torch.cuda.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.72 GiB of "
            "which 1.2 GiB is free. Including non-PyTorch memory, this process has 138.5 GiB memory in use.\n"
            "If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF"
        )
        reason = "CUDA out of memory. Tried to allocate 2.00 GiB"

    def main():
        raise error

    with pytest.raises(SystemExit) as exit_info:
        cli.run_cli(main, freeze_gc=False)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: out of memory ({reason}): use smaller --hidden_dims" in err, err


# ---------------------------------------------------------------- failed saves


def test_atomic_write_all_turns_an_os_error_into_one_line_naming_the_file(tmp_path, monkeypatch):
    """Disk full at the rename: a SaveError (exit 2 in run_cli) naming the target and the reason;
    the earlier files stay whole and no temporary file is left."""
    (tmp_path / "a.bin").write_bytes(b"old a")
    real_replace = os.replace

    def full_disk(src, dst):
        if os.path.basename(dst) == "b.bin":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src)
        real_replace(src, dst)

    monkeypatch.setattr(output.os, "replace", full_disk)
    writers = {os.fspath(tmp_path / name): lambda f: f.write(b"new") for name in ("b.bin", "a.bin")}
    with pytest.raises(output.SaveError) as error:
        output.atomic_write_all(writers)
    assert isinstance(error.value, ValueError) and isinstance(error.value.__cause__, OSError)
    message = str(error.value)
    assert message == f"cannot write {tmp_path / 'b.bin'}: {os.strerror(errno.ENOSPC)}"
    assert "\n" not in message
    assert os.listdir(tmp_path) == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"old a"


def test_a_writer_failing_with_an_os_error_is_a_save_error_too(tmp_path):
    def write(f):
        f.write(b"half")
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with pytest.raises(output.SaveError, match=f"f.bin: {os.strerror(errno.EIO)}"):
        output.atomic_write(os.fspath(tmp_path / "f.bin"), write)
    assert os.listdir(tmp_path) == []


def test_save_run_failing_is_a_save_error(tmp_path):
    (tmp_path / "out").write_bytes(b"a file where the directory goes")
    with pytest.raises(output.SaveError, match="out"):
        args = {**RUN_ARGS, "output_dir": os.fspath(tmp_path / "out")}
        output.save_run(args, fake_logging_info(1.0), 0.5, lambda f: None, model_name="m.bin")
    assert (tmp_path / "out").read_bytes() == b"a file where the directory goes"


# ---------------------------------------------------------------- the shared checks


def test_available_memory_is_a_positive_number_of_bytes():
    available = checks.available_memory()
    assert available is None or (isinstance(available, int) and available > 0)


def test_training_bytes_counts_weights_gradients_and_a_batch_of_activations():
    # 3 -> 2 -> 4: (3+1)*2 + (2+1)*4 = 20 parameters, and 9 units for each of 5 samples
    assert checks.training_bytes([2], 5, n_inputs=3, n_classes=4) == 4 * (2 * 20 + 5 * 9)
    huge_batch = checks.training_bytes([2], 10**12, n_inputs=3, n_classes=4)
    assert huge_batch == 4 * (2 * 20 + checks.MAX_BATCH * 9)  # larger batches are refused later


def test_networks_larger_than_memory_are_refused_in_one_line(monkeypatch):
    with pytest.raises(ValueError, match="memory") as error:
        checks.check_hyperparameters([10**9], 0.1, 128, 10)
    assert "\n" not in str(error.value) and "[1000000000]" in str(error.value)

    monkeypatch.setattr(checks, "available_memory", lambda: 10**8)  # 100 MB
    checks.check_hyperparameters([128], 0.1, 128, 10)  # 3.2 MB of weights and gradients
    with pytest.raises(ValueError, match="0.1 GB is available"):
        checks.check_hyperparameters([4096, 4096], 0.1, 128, 10)  # 0.23 GB
    monkeypatch.setattr(checks, "available_memory", lambda: None)  # the system does not say
    checks.check_hyperparameters([4096, 4096], 0.1, 128, 10)


def test_check_output_dir_refuses_a_directory_where_a_file_goes(tmp_path):
    checks.check_output_dir(os.fspath(tmp_path / "new" / "dir"), output.run_filenames("m.npz"))
    (tmp_path / "model.npz").mkdir()
    with pytest.raises(ValueError, match="model.npz"):
        checks.check_output_dir(os.fspath(tmp_path), output.run_filenames("model.npz"))
    checks.check_output_dir(os.fspath(tmp_path))  # no file names given: nothing to refuse
    assert set(output.run_filenames("model.npz")) == OUTPUT_FILES


def test_build_parser_takes_the_data_dir_default_from_the_environment(monkeypatch):
    monkeypatch.setenv("CIFAR10_DATA_DIR", "/somewhere/cifar")
    assert cli.build_parser("x", "mlp_x").parse_args([]).data_dir == "/somewhere/cifar"
    monkeypatch.delenv("CIFAR10_DATA_DIR")
    assert cli.build_parser("x", "mlp_x").parse_args([]).data_dir == "data/"
    assert cli.default_data_dir is cifar10_utils.default_data_dir


# ---------------------------------------------------------------- divergence helpers and exit code


def test_divergence_helpers():
    info = runlog.new_logging_info()
    assert info["diverged"] is False
    cli.raise_if_diverged(info)  # nothing to raise
    runlog.mark_diverged(info, 2, 7, [2.3, math.inf])
    assert info["diverged"] is True and info["diverged_at"] == {"epoch": 2, "step": 7}
    assert info["batch_loss"] == [2.3, math.inf]
    message = runlog.divergence_message(info)
    assert message == "diverged at epoch 2, step 7 (loss is not finite): try a smaller --lr"
    with pytest.raises(cli.Diverged, match=re.escape(message)):
        cli.raise_if_diverged(info)


def test_run_cli_diverged_is_one_line_exit_3(capsys):
    info = runlog.new_logging_info()
    runlog.mark_diverged(info, 1, 2)

    def diverged_main():
        print("test accuracy 0.1000 (best epoch 1); saving to out/")
        cli.raise_if_diverged(info)

    with pytest.raises(SystemExit) as exit_info:
        cli.run_cli(diverged_main, freeze_gc=False)
    assert exit_info.value.code == cli.EXIT_DIVERGED == 3
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.endswith(
        "error: diverged at epoch 1, step 2 (loss is not finite): try a smaller --lr\n"
    )
    assert captured.out.startswith("test accuracy")


def test_result_line():
    info = fake_logging_info(1.0)
    assert runlog.result_line(0.51234, info) == "test accuracy 0.5123 (best epoch 1)"
    assert runlog.result_line(None, runlog.new_logging_info()) == ("no test accuracy (no epoch finished)")


# ---------------------------------------------------------------- figures


def figure_lines(fig):
    return [line for ax in fig.axes for line in ax.get_lines() if line.get_label() != "loss not finite"]


@pytest.mark.parametrize("epochs", [1, 3, 30])
def test_loss_curve_has_markers_and_integer_epoch_ticks(epochs):
    info = runlog.new_logging_info()
    for e in range(epochs):
        runlog.log_epoch(info, [2.0 - 0.01 * e] * 4, 3, 4, 0.5, 1.0)
    info["best_epoch"] = 1
    fig = plots.loss_curve_figure(info, "title")
    for line in figure_lines(fig):  # a curve of one point is only visible as a marker
        if len(line.get_xdata()) <= 100:  # a long per-batch curve is seen without (and hidden with) them
            assert line.get_marker() not in (None, "", "None", " "), line.get_label()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
        assert ax.get_xlim()[1] >= epochs


def test_loss_curve_of_a_run_that_diverged_before_any_epoch_finished():
    info = runlog.new_logging_info()
    info["batches_per_epoch"] = 15
    runlog.mark_diverged(info, 1, 2, [2.5, math.inf])
    fig = plots.loss_curve_figure(info, output.run_title(RUN_ARGS, None, info))
    assert "diverged at epoch 1, step 2" in fig._suptitle.get_text()
    (per_batch,) = [line for line in fig.axes[0].get_lines() if line.get_label() == "per batch"]
    assert list(per_batch.get_xdata()) == [1 / 15, 2 / 15]
    png = io_png(fig)
    assert png.startswith(PNG)


def io_png(fig):
    import io

    buffer = io.BytesIO()
    output.png_writer(fig)(buffer)
    return buffer.getvalue()


def test_weights_figure_draws_each_unit_channel_major_and_rescaled_to_its_own_range():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(5, 3, 32, 32))  # each unit's weights as a (channel, row, column) image
    images[2, 0, 0, 0] = 1.0  # unit 2 has a full red top-left pixel...
    images[2, 1:, 0, 0] = 0.0
    images[2] = images[2] * 1000.0 - 7.0  # ...whatever the scale of its weights
    weight = images.reshape(5, 3072)  # a row of 3072 as the first Linear layer holds it
    fig = plots.weights_figure(weight)
    mosaic = np.asarray(fig.axes[0].get_images()[0].get_array())
    n_cols, gap = 3, 2  # ceil(sqrt(5)) columns of 32 + 2 pixels, a gap of 2 before the first
    for unit in range(5):
        row, col = divmod(unit, n_cols)
        top, left = gap + row * 34, gap + col * 34
        drawn = mosaic[top : top + 32, left : left + 32]
        expected = images[unit].transpose(1, 2, 0)  # (32, 32, 3) for display
        expected = (expected - expected.min()) / (expected.max() - expected.min())
        np.testing.assert_allclose(drawn, expected, atol=1e-12)
    assert np.array_equal(mosaic[gap + 0, gap + 2 * 34], [1.0, 0.0, 0.0])  # unit 2 (row 0, column 2)
    assert "5 units" in fig._suptitle.get_text()


def test_weights_figure_copes_with_constant_and_non_finite_units():
    weight = np.zeros((3, 3072))
    weight[1, :10] = np.nan
    weight[2, 0] = np.inf
    weight[2, 1] = 1.0
    fig = plots.weights_figure(weight)
    mosaic = np.asarray(fig.axes[0].get_images()[0].get_array())
    assert np.isfinite(mosaic).all() and mosaic.min() >= 0.0 and mosaic.max() <= 1.0
    assert io_png(fig).startswith(PNG)
    with pytest.raises(ValueError, match="3072"):
        plots.weights_figure(np.zeros((3, 100)))


def test_save_run_writes_the_first_layer_figure_and_the_divergence(tmp_path):
    info = fake_logging_info(1.0)
    weight = np.random.default_rng(0).normal(size=(4, 3072)).astype(np.float32)
    output.save_run(
        {**RUN_ARGS, "output_dir": os.fspath(tmp_path)}, info, 0.5, lambda f: f.write(b"m"), weight, "m.bin"
    )
    assert sorted(os.listdir(tmp_path)) == ["first_layer_weights.png", "log.json", "loss_curve.png", "m.bin"]
    assert (tmp_path / "first_layer_weights.png").read_bytes().startswith(PNG)
    assert json.loads((tmp_path / "log.json").read_text())["diverged"] is False

    info = runlog.new_logging_info()
    runlog.mark_diverged(info, 1, 1, [math.nan])
    args = {**RUN_ARGS, "output_dir": os.fspath(tmp_path / "d")}
    output.save_run(args, info, None, lambda f: f.write(b"m"), weight, "m.bin")
    log = json.loads((tmp_path / "d" / "log.json").read_text())  # strict JSON: nan written as null
    assert log["diverged"] is True and log["test_accuracy"] is None
    assert log["logging_info"]["batch_loss"] == [None]
