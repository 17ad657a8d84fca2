"""compare_batch_norm.py: the results file and its keys, resuming, the lock, the layer statistics,
the paired differences, the figures and tables, and the command line.

Everything runs on made-up CIFAR-10 batches (tests/conftest.py). train() splits off the default
5000 validation images, so the fake set holds 5 x 1026 training images: 130 left to train on and
100 test images. One tiny extended study (2 architectures x 2 learning rates, one of them large
enough to diverge, x 2 batch norm x 2 seeds, 1 epoch) is really trained once for the module; the
resume, reuse and table tests use a fake train() that records its calls.
"""

import fcntl
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PNG, REPO_ROOT, write_fake_cifar

import cifar10_utils
import compare_batch_norm as cbn
import train_mlp_pytorch
from support import output, study_config
from support.cli import run_cli as support_run_cli

N_PER_BATCH, N_TEST = 1026, 100
N_VAL = 5000  # train() uses get_cifar10's default validation_size
BATCH = 16  # 8 steps per epoch on the 130 training images
HUGE_LR = 1e30  # the weights overflow within the first steps
TINY = {  # the CI version of the extended study
    "study": "extended",
    "architectures": [[8], [8, 4]],
    "lrs": [0.05, HUGE_LR],
    "seeds": [1, 2],
    "epochs": 1,
    "batch_size": BATCH,
}
FAKE = {**TINY, "lrs": [0.05, 0.5], "epochs": 2}  # for the fake train(): nothing diverges
STATS = (
    "linear_std",
    "preact_mean",
    "preact_std",
    "dead_fraction",
    "zero_fraction",
    "weight_norm",
    "weight_grad_norm",
)
SCRIPT = os.fspath(REPO_ROOT / "compare_batch_norm.py")


def key(run):
    return (tuple(run["hidden_dims"]), run["use_batch_norm"], run["lr"], run["seed"])


def planned(settings):
    return {key(run) for run in cbn.planned_runs(cbn.study_settings(**settings))}


def strict_json(text):
    """json.loads that also refuses NaN / Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


class FakeTrain:
    """Stands in for train_mlp_pytorch.train: plausible, deterministic logging_info, calls recorded.

    ``interrupt_on=k`` raises KeyboardInterrupt on the k-th call (1-based), as Ctrl-C would;
    runs with lr >= ``diverge_from`` diverge at epoch 1, step 3.
    """

    def __init__(self, interrupt_on=None, diverge_from=math.inf):
        self.calls, self.interrupt_on, self.diverge_from = [], interrupt_on, diverge_from

    def __call__(self, hidden_dims, lr, use_batch_norm, batch_size, epochs, seed, data_dir, **kwargs):
        self.calls.append((tuple(hidden_dims), use_batch_norm, lr, seed))
        self.kwargs, self.data_dir = kwargs, data_dir
        if len(self.calls) == self.interrupt_on:
            raise KeyboardInterrupt
        base = 0.2 + 0.02 * len(hidden_dims) + 0.05 * use_batch_norm + 0.003 * seed + 0.01 * lr
        if lr >= self.diverge_from:
            info = {"train_loss": [], "train_accuracy": [], "val_accuracy": [], "batch_loss": [2.3, 9.0]}
            info["epoch_time"] = []
            info.update(diverged=True, diverged_at={"epoch": 1, "step": 3}, device="cpu")
            return None, [], None, info
        val = [round(base + 0.01 * e, 4) for e in range(epochs)]
        info = {
            "train_loss": [2.3 - 0.1 * e for e in range(epochs)],
            "train_accuracy": [base + 0.02 * e for e in range(epochs)],
            "val_accuracy": val,
            "batch_loss": [2.3 - 0.01 * i for i in range(60 * epochs)],
            "epoch_time": [0.5] * epochs,
            "best_epoch": epochs,
            "device": "cpu",
            "diverged": False,
        }
        return None, val, round(base - 0.01, 4), info


def refuse_to_train(*args, **kwargs):
    raise AssertionError("train() was called")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return os.fspath(write_fake_cifar(root / "data", n_per_batch=N_PER_BATCH, seed=0, n_test=N_TEST).data_dir)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, data_dir):
    """The tiny extended study really trained once: (results file, returned results, file bytes)."""
    path = tmp_path_factory.mktemp("study") / "results.json"
    results = cbn.train_models(os.fspath(path), data_dir=data_dir, progress=False, **TINY)
    return path, results, path.read_bytes()


@pytest.fixture
def results_copy(tiny_study, tmp_path):
    """A private copy of the tiny study's results file, in its own directory."""
    path = tmp_path / "copy" / "results.json"
    path.parent.mkdir()
    path.write_bytes(tiny_study[2])
    return path


@pytest.fixture
def fake_train(monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(train_mlp_pytorch, "train", fake)
    return fake


# ---------------------------------------------------------------- the results file


def test_results_file_holds_every_run(tiny_study):
    path, results, raw = tiny_study
    assert strict_json(raw.decode()) == results, "the file is not what train_models returned"
    assert results["settings"] == cbn.study_settings(**TINY)
    runs = results["runs"]
    assert len(runs) == 16 and {key(r) for r in runs} == planned(TINY)
    for run in runs:
        assert set(run) >= study_config.RUN_FIELDS, study_config.RUN_FIELDS - set(run)
        assert (run["epochs"], run["batch_size"], run["batch_norm"]) == (1, BATCH, "torch")
        stats = run["layer_stats"]
        assert stats["images"] == 500 and stats["epochs"][0] == 0
        assert len(stats["layers"]) == len(run["hidden_dims"]) + 1  # hidden layers and the output
        for layer in stats["layers"][:-1]:
            assert set(layer) == set(STATS)
        assert set(stats["layers"][-1]) == {"linear_std", "weight_norm", "weight_grad_norm"}
        if run["lr"] == HUGE_LR:
            continue
        assert not run["diverged"] and run["diverged_at"] is None
        assert stats["epochs"] == [0, 1] and all(
            len(v) == 2 for layer in stats["layers"] for v in layer.values()
        )
        for layer in stats["layers"][:-1]:
            for name in ("dead_fraction", "zero_fraction"):
                assert all(0 <= v <= 1 for v in layer[name])
            assert all(v > 0 for v in layer["preact_std"] + layer["weight_grad_norm"])
            # with batch norm in train mode the ReLU's input is standardised (gamma 1 at init)
            if run["use_batch_norm"]:
                assert layer["preact_std"][0] == pytest.approx(1, abs=1e-3)
                assert layer["preact_mean"][0] == pytest.approx(0, abs=1e-5)
        assert run["first_steps_loss"] == pytest.approx(run["first_steps_loss"])  # finite
        assert len(run["first_steps_loss"]) == 130 // BATCH  # all 8 steps (fewer than 50)
        assert run["train_loss"][0] == pytest.approx(np.mean(run["first_steps_loss"]), rel=1e-5)
        assert run["val_accuracy"][0] * N_VAL == pytest.approx(
            round(run["val_accuracy"][0] * N_VAL), abs=1e-6
        )
        assert run["test_accuracy"] * N_TEST == pytest.approx(round(run["test_accuracy"] * N_TEST), abs=1e-6)
        assert run["best_epoch"] == 1 and run["wall_time"] > 0


def test_diverged_runs_are_recorded_and_the_study_goes_on(tiny_study):
    runs = tiny_study[1]["runs"]
    diverged = [r for r in runs if r["lr"] == HUGE_LR]
    assert len(diverged) == 8 and all(r["diverged"] for r in diverged), [r["diverged"] for r in diverged]
    for run in diverged:
        assert run["diverged_at"]["epoch"] == 1 and 1 <= run["diverged_at"]["step"] <= 130 // BATCH
        assert run["val_accuracy"] == [] and run["test_accuracy"] is None
        assert run["layer_stats"]["epochs"] == [0]  # the initialisation, then no finished epoch
    # the runs after a diverged one were trained: every seed's small lr finished
    assert sum(not r["diverged"] for r in runs) == 8


def test_paired_arms_share_initial_weights(tiny_study):
    """Through the study's own record: same seed -> same init fingerprint and the same first
    layer's output on the fixed batch at epoch 0 (batch norm comes after it)."""
    runs = {key(r): r for r in tiny_study[1]["runs"]}
    for dims in map(tuple, TINY["architectures"]):
        for lr in TINY["lrs"]:
            for seed in TINY["seeds"]:
                no_bn, bn = runs[dims, False, lr, seed], runs[dims, True, lr, seed]
                assert no_bn["init_fingerprint"] == bn["init_fingerprint"]
                first = [r["layer_stats"]["layers"][0]["linear_std"][0] for r in (no_bn, bn)]
                assert first[0] == first[1]
            assert (
                runs[dims, False, lr, 1]["init_fingerprint"] != runs[dims, False, lr, 2]["init_fingerprint"]
            )


def test_paired_arms_see_the_same_batches(monkeypatch, data_dir, tmp_path):
    """The labels of every training batch, recorded inside the study's runs, match between the arms."""
    seen, real = [], train_mlp_pytorch.get_device_loaders

    class Recorder:
        def __init__(self, loader):
            self.loader, self.labels = loader, []
            seen.append(self.labels)

        def __len__(self):
            return len(self.loader)

        def __getattr__(self, name):
            return getattr(self.loader, name)

        def __iter__(self):
            for x, y in self.loader:
                self.labels.append(y.tolist())
                yield x, y

    def recording(dataset, batch_size, *args, **kwargs):
        loaders = real(dataset, batch_size, *args, **kwargs)
        if batch_size == BATCH:  # the trainer's loaders (not the statistics batch)
            loaders["train"] = Recorder(loaders["train"])
        return loaders

    monkeypatch.setattr(train_mlp_pytorch, "get_device_loaders", recording)
    settings = {**TINY, "architectures": [[8]], "lrs": [0.05], "seeds": [3], "epochs": 2}
    cbn.train_models(os.fspath(tmp_path / "r.json"), data_dir=data_dir, progress=False, **settings)
    assert len(seen) == 2 and len(seen[0]) == 2 * (130 // BATCH)
    assert seen[0] == seen[1]
    assert seen[0][0] != seen[0][len(seen[0]) // 2], "the second epoch repeated the first's order"


# ---------------------------------------------------------------- reusing runs


def test_rerun_trains_nothing(results_copy, tiny_study, monkeypatch):
    monkeypatch.setattr(train_mlp_pytorch, "train", refuse_to_train)
    results = cbn.train_models(os.fspath(results_copy), data_dir="no/data/here", progress=False, **TINY)
    assert results == tiny_study[1]
    assert results_copy.read_bytes() == tiny_study[2]
    assert sorted(os.listdir(results_copy.parent)) == ["results.json"], "the lock file was left behind"


@pytest.mark.parametrize("change", [{"seeds": [1, 2, 3]}, {"lrs": [0.05, 0.5, 0.01]}], ids=["seed", "lr"])
def test_adding_seeds_or_lrs_trains_only_the_new_runs(change, tmp_path, fake_train):
    path = os.fspath(tmp_path / "r.json")
    first = cbn.train_models(path, progress=False, **FAKE)
    n = len(fake_train.calls)
    more = {**FAKE, **change}
    results = cbn.train_models(path, progress=False, **more)
    assert set(fake_train.calls[n:]) == planned(more) - planned(FAKE)
    assert len(fake_train.calls) == n + len(planned(more) - planned(FAKE))
    assert results["runs"][: len(first["runs"])] == first["runs"], "finished runs were changed"
    assert strict_json(Path(path).read_text())["settings"] == cbn.study_settings(**more)
    # going back to the smaller study trains nothing and draws only its runs
    cbn.train_models(path, progress=False, **FAKE)
    assert len(fake_train.calls) == n + len(planned(more) - planned(FAKE))
    assert len(cbn.study_runs(strict_json(Path(path).read_text()))) == len(planned(FAKE))


def test_runs_are_keyed_by_epochs_and_batch_size(tmp_path, fake_train):
    path = os.fspath(tmp_path / "r.json")
    cbn.train_models(path, progress=False, **FAKE)
    cbn.train_models(path, progress=False, **{**FAKE, "epochs": 3})
    cbn.train_models(path, progress=False, **{**FAKE, "batch_size": 32})
    assert len(fake_train.calls) == 3 * 16
    assert len(strict_json(Path(path).read_text())["runs"]) == 3 * 16


def test_train_gets_each_runs_settings(fake_train, tmp_path):
    cbn.train_models(os.fspath(tmp_path / "r.json"), data_dir="somewhere/", progress=False, **FAKE)
    assert set(fake_train.calls) == planned(FAKE) and len(fake_train.calls) == 16
    assert fake_train.kwargs["batch_norm"] == "torch" and fake_train.kwargs["log_epochs"] is False
    assert isinstance(fake_train.kwargs["epoch_callback"], cbn.LayerStatistics)
    # the two arms of a pair are trained one after the other, seeds outermost
    assert [c[1] for c in fake_train.calls[:2]] == [False, True]
    assert [c[3] for c in fake_train.calls] == sorted(c[3] for c in fake_train.calls)


def test_interrupted_study_resumes(monkeypatch, tmp_path):
    path = tmp_path / "study" / "r.json"
    interrupted = FakeTrain(interrupt_on=3)
    monkeypatch.setattr(train_mlp_pytorch, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cbn.train_models(os.fspath(path), progress=False, **FAKE)
    saved = strict_json(path.read_text())
    assert [key(r) for r in saved["runs"]] == interrupted.calls[:2]
    assert os.listdir(path.parent) == ["r.json"], "a temporary or lock file was left behind"

    resumed = FakeTrain()
    monkeypatch.setattr(train_mlp_pytorch, "train", resumed)
    results = cbn.train_models(os.fspath(path), progress=False, **FAKE)
    assert len(resumed.calls) == 14 and set(resumed.calls) == planned(FAKE) - set(interrupted.calls[:2])
    assert results["runs"][:2] == saved["runs"], "finished runs were changed"
    assert strict_json(path.read_text()) == results


def test_fresh_retrains_everything(results_copy, fake_train):
    cbn.train_models(os.fspath(results_copy), progress=False, fresh=True, **TINY)
    assert len(fake_train.calls) == 16


# ---------------------------------------------------------------- refusing files


CORRUPT = {
    "empty": b"",
    "not JSON": b"epoch 1: loss 2.3\n",
    "truncated": lambda raw: raw[: len(raw) // 2],
    "not UTF-8": b"\xff\xfe\x00garbage",
    "a list": b"[]\n",
    "no runs": lambda raw: json.dumps({"settings": json.loads(raw)["settings"]}).encode(),
    "run without layer_stats": lambda raw: json.dumps(
        {
            **json.loads(raw),
            "runs": [{k: v for k, v in json.loads(raw)["runs"][0].items() if k != "layer_stats"}],
        }
    ).encode(),
    "before keyed runs": json.dumps(  # what this script wrote before runs were keyed by lr
        {
            "settings": {"architectures": [[128]], "epochs": 20, "lr": 0.1, "batch_size": 128, "seeds": [42]},
            "runs": [{"hidden_dims": [128], "use_batch_norm": False, "seed": 42, "test_accuracy": 0.5}],
        }
    ).encode(),
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_results_file_is_refused(content, results_copy, tiny_study, fake_train):
    raw = content(tiny_study[2]) if callable(content) else content
    results_copy.write_bytes(raw)
    with pytest.raises(ValueError, match=re.escape(os.fspath(results_copy))):
        cbn.train_models(os.fspath(results_copy), progress=False, **TINY)
    assert results_copy.read_bytes() == raw, "the refused file was changed"
    assert fake_train.calls == []
    with pytest.raises(ValueError, match=re.escape(os.fspath(results_copy))):
        cbn.plot_results(os.fspath(results_copy))
    assert sorted(os.listdir(results_copy.parent)) == ["results.json"]


def test_results_path_that_is_a_directory_is_refused(tmp_path, fake_train):
    (tmp_path / "r.json").mkdir()
    with pytest.raises(ValueError, match="directory"):
        cbn.train_models(os.fspath(tmp_path / "r.json"), fresh=True, epochs=1)
    assert fake_train.calls == []


@pytest.mark.parametrize(
    "bad",
    [{"seeds": [1, 1]}, {"lrs": [0.1, 0.1]}, {"lrs": [0.0]}, {"epochs": 0}, {"study": "huge"}, {"colour": 1}],
    ids=["duplicate seeds", "duplicate lrs", "lr 0", "epochs 0", "unknown study", "unknown setting"],
)
def test_bad_settings_are_refused_before_training(bad, tmp_path, fake_train):
    with pytest.raises(ValueError):
        cbn.train_models(os.fspath(tmp_path / "r.json"), progress=False, **{**FAKE, **bad})
    assert fake_train.calls == [] and os.listdir(tmp_path) == []


# ---------------------------------------------------------------- the lock


def hold_lock(path, pid="4242"):
    """Hold the study's lock on `path` as another process would: the open file, locked."""
    lock = open(f"{path}.lock", "w")  # noqa: SIM115 (closed by the caller)
    fcntl.flock(lock, fcntl.LOCK_EX)
    lock.write(f"{pid}\n")
    lock.flush()
    return lock


def test_a_held_lock_refuses_a_second_study(results_copy, fake_train):
    lock = hold_lock(results_copy)
    try:
        with pytest.raises(ValueError, match=r"process 4242 .*--wait"):
            cbn.train_models(os.fspath(results_copy), progress=False, fresh=True, **TINY)
    finally:
        lock.close()
    assert fake_train.calls == []
    cbn.train_models(os.fspath(results_copy), progress=False, fresh=True, **TINY)  # released: trains
    assert len(fake_train.calls) == 16


def test_lock_on_the_command_line(tmp_path, monkeypatch):
    """A second process exits 2 with one line naming the holder; with --wait it says whom it
    waits for, waits, then runs (here a study whose runs are all in the file: it only plots)."""
    monkeypatch.setattr(train_mlp_pytorch, "train", FakeTrain())
    results = tmp_path / "r.json"
    cbn.train_models(os.fspath(results), progress=False, seeds=[1], epochs=1)
    args = ["--seeds", "1", "--epochs", "1", "--results", os.fspath(results), "--data_dir", "no/data"]
    lock = hold_lock(results, pid="777")
    try:
        proc = run_cli([*args, "--no_progress"], tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1 and "process 777" in proc.stderr, proc.stderr
        waiting = subprocess.Popen(
            [sys.executable, SCRIPT, *args, "--no_progress", "--wait"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = waiting.stderr.readline()
        assert "process 777" in line and "waiting" in line, line
        time.sleep(0.3)
        assert waiting.poll() is None, "did not wait"
    finally:
        lock.close()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, out + err
    assert "results in" in out and not os.path.exists(f"{results}.lock")


# ---------------------------------------------------------------- figures and tables


def check_png(path):
    import matplotlib.pyplot as plt

    data = Path(path).read_bytes()
    assert data.startswith(PNG) and len(data) > 5000, path
    assert min(plt.imread(path).shape[:2]) > 300, path


def read_table(path):
    """(first line, header cells, rows of cells) of the Markdown table in `path`, its frame checked."""
    text = Path(path).read_text()
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    assert len({len(row) for row in cells}) == 1, "rows with different numbers of cells"
    assert all(re.fullmatch(r":?-{3,}:?", c) for c in cells[1]), "no Markdown separator row"
    return text.splitlines()[0], cells[0], cells[2:]


def test_extended_figures_and_tables(results_copy, tiny_study, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mlp_pytorch, "train", refuse_to_train)
    monkeypatch.setattr(cifar10_utils, "get_cifar10", refuse_to_train)
    figure_dir = tmp_path / "figures"
    paths = cbn.plot_results(os.fspath(results_copy), os.fspath(figure_dir))
    assert sorted(os.path.basename(p) for p in paths) == sorted(cbn.FIGURES["extended"])
    assert sorted(os.listdir(figure_dir)) == sorted(cbn.FIGURES["extended"])
    for name in cbn.FIGURES["extended"]:
        if name.endswith(".png"):
            check_png(figure_dir / name)

    first, header, rows = read_table(figure_dir / "paired_differences.md")
    assert first.startswith(
        "Made by `python compare_batch_norm.py --study extended --seeds 1 2 --lrs 0.05 1e+30"
    )
    assert f"--results {results_copy}" in first and "architectures=[[8], [8, 4]]" in first
    runs = {key(r): r for r in tiny_study[1]["runs"]}
    assert [row[:2] for row in rows] == [
        ["[8]", "0.05"],
        ["[8]", "1e+30"],
        ["[8, 4]", "0.05"],
        ["[8, 4]", "1e+30"],
        ["pooled", "all"],
    ]
    for row in rows[:-1]:
        dims, lr = tuple(json.loads(row[0])), float(row[1])
        if lr == HUGE_LR:  # both arms diverged for both seeds: no number, said so
            assert row[2] == "0" and row[3] == row[4] == "diverged" and row[5] == "—"
            assert "no BN diverged (seeds 1, 2)" in row[7] and "; BN diverged (seeds 1, 2)" in row[7]
            continue
        diffs = [
            runs[dims, True, lr, s]["test_accuracy"] - runs[dims, False, lr, s]["test_accuracy"]
            for s in (1, 2)
        ]
        assert row[2] == "2" and float(row[5]) == pytest.approx(np.mean(diffs), abs=6e-5)
        low, high = (float(v) for v in row[6].strip("[]").split(","))
        half = 12.7062 * np.std(diffs, ddof=1) / math.sqrt(2)
        assert (low, high) == pytest.approx((np.mean(diffs) - half, np.mean(diffs) + half), abs=6e-5)
    # pooled over the two configurations at lr 0.05, both seeds: the mean of their four differences
    pooled = np.mean(
        [
            runs[d, True, 0.05, s]["test_accuracy"] - runs[d, False, 0.05, s]["test_accuracy"]
            for d in ((8,), (8, 4))
            for s in (1, 2)
        ]
    )
    assert float(rows[-1][5]) == pytest.approx(pooled, abs=6e-5)
    text = (figure_dir / "paired_differences.md").read_text()
    assert "Left out (2, a diverged or untrained arm): [8] at lr 1e+30, [8, 4] at lr 1e+30." in text

    _, header, rows = read_table(figure_dir / "lr_sweep.md")
    assert len(rows) == 8 and all(row[3] == "2" for row in rows)
    assert [row[4] for row in rows] == ["0", "0", "2", "2"] * 2  # diverged counts, per lr 0.05 then 1e30
    assert all(row[5] == "—" for row in rows if row[2] == "1e+30")


def test_default_study_tables_with_fake_runs(tmp_path, fake_train):
    fake_train.diverge_from = 0.5
    settings = {**FAKE, "study": "default", "lrs": [0.1, 0.5], "seeds": [4, 5, 6]}
    path = tmp_path / "r.json"
    cbn.train_models(os.fspath(path), progress=False, **settings)
    paths = cbn.plot_results(os.fspath(path))
    assert sorted(os.path.basename(p) for p in paths) == sorted(cbn.FIGURES["default"])
    first, header, rows = read_table(tmp_path / "test_accuracy.md")
    assert "--study" not in first and "--seeds 4 5 6 --lrs 0.1 0.5 --epochs 2" in first
    assert len(rows) == 8 and [row[-2] for row in rows] == ["0", "0", "3", "3"] * 2
    assert all("±" in row[4] for row in rows if row[2] == "0.1")
    for name in ("train_accuracy.png", "val_accuracy.png", "test_accuracy.png", "layer_stats.png"):
        check_png(tmp_path / name)


def test_plot_results_of_an_interrupted_study(monkeypatch, tmp_path):
    path = tmp_path / "r.json"
    monkeypatch.setattr(train_mlp_pytorch, "train", FakeTrain(interrupt_on=4))
    with pytest.raises(KeyboardInterrupt):
        cbn.train_models(os.fspath(path), progress=False, **FAKE)
    paths = cbn.plot_results(os.fspath(path))
    assert sorted(os.path.basename(p) for p in paths) == sorted(cbn.FIGURES["extended"])
    text = (tmp_path / "paired_differences.md").read_text()
    assert "(3 of its 16 runs finished so far)" in text and "not trained yet (seed 2)" in text


def test_plot_results_refuses_a_file_without_runs(tmp_path):
    path = tmp_path / "r.json"
    output.write_json(path, {"settings": cbn.study_settings(), "runs": []})
    with pytest.raises(ValueError, match=re.escape(os.fspath(path))):
        cbn.plot_results(os.fspath(path), os.fspath(tmp_path / "figures"))
    assert not (tmp_path / "figures").exists()


_NO_TORCH_SCRIPT = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
sys.modules["torch"] = None  # any import of torch now fails
import cifar10_utils
def no_data(*args, **kwargs):
    raise SystemExit("plot_results read the data set")
cifar10_utils.get_cifar10 = no_data
import compare_batch_norm
paths = compare_batch_norm.plot_results(sys.argv[2], "figures")
print("PLOTTED", len(paths))
"""


def test_plot_results_needs_neither_torch_nor_data(results_copy, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH_SCRIPT, os.fspath(REPO_ROOT), os.fspath(results_copy)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"PLOTTED {len(cbn.FIGURES['extended'])}" in proc.stdout


# ---------------------------------------------------------------- command line


def run_cli(args, cwd):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def run_main(args, monkeypatch):
    """compare_batch_norm.main() in this process (so that train() can be a fake), as the command line."""
    monkeypatch.setattr(sys, "argv", ["compare_batch_norm.py", *args])
    cbn.main()


def test_command_line_trains_then_plots_and_the_tables_command_reruns_it(tmp_path, monkeypatch, capsys):
    """The default three architectures, two seeds; then the command written at the top of the
    table, run as it stands, reuses all twelve runs and rewrites identical tables."""
    fake = FakeTrain()
    monkeypatch.setattr(train_mlp_pytorch, "train", fake)
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "out" / "r.json"
    run_main(
        ["--data_dir", "somewhere", "--epochs", "1", "--seeds", "1", "2", "--results", "out/r.json"],
        monkeypatch,
    )
    assert len(fake.calls) == 12 and {c[0] for c in fake.calls} == {(128,), (256, 128), (512, 256, 128)}
    assert sorted(os.listdir(results.parent)) == sorted(["r.json", *cbn.FIGURES["default"]])
    study = strict_json(results.read_text())
    assert study["settings"] == cbn.study_settings(seeds=[1, 2], epochs=1)
    assert "results in out/r.json" in capsys.readouterr().out
    assert not (tmp_path / "results").exists(), "wrote to the default results path too"

    first = (results.parent / "test_accuracy.md").read_text().splitlines()[0]
    command = re.fullmatch(r"Made by `(python compare_batch_norm\.py [^`]*)`: .*", first).group(1)
    assert command == "python compare_batch_norm.py --seeds 1 2 --epochs 1 --results out/r.json"
    assert (results.parent / "paired_differences.md").read_text().splitlines()[0] == first
    tables = {
        name: (results.parent / name).read_bytes() for name in ("test_accuracy.md", "paired_differences.md")
    }
    raw = results.read_bytes()
    run_main(command.split()[2:], monkeypatch)
    assert len(fake.calls) == 12, "the table's command trained again"
    assert results.read_bytes() == raw
    assert {name: (results.parent / name).read_bytes() for name in tables} == tables


def test_default_command_line_study(monkeypatch, tmp_path):
    """Plain `python compare_batch_norm.py`: the seed's six runs, 20 epochs, lr 0.1, batch 128."""
    fake = FakeTrain()
    monkeypatch.setattr(train_mlp_pytorch, "train", fake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFAR10_DATA_DIR", "/the/data")
    run_main([], monkeypatch)
    assert fake.data_dir == "/the/data"
    assert sorted(fake.calls) == sorted((tuple(a), bn, 0.1, 42) for a in cbn.ARCHITECTURES for bn in (0, 1))
    assert (fake.kwargs["batch_norm"], fake.kwargs["device"]) == ("torch", "auto")
    results = strict_json((tmp_path / "results" / "batch_norm" / "results.json").read_text())
    assert {(r["epochs"], r["batch_size"]) for r in results["runs"]} == {(20, 128)}
    first = (tmp_path / "results" / "batch_norm" / "test_accuracy.md").read_text().splitlines()[0]
    assert (
        first
        == "Made by `python compare_batch_norm.py`: 20 epochs, batch size 128, seeds 42; trained on cpu."
    )


def cli(args, monkeypatch, capsys):
    """The command line in this process, with run_cli's one-line errors: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["compare_batch_norm.py", *args])
    capsys.readouterr()
    try:
        support_run_cli(cbn.main, freeze_gc=False)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


BAD_FLAGS = {
    "epochs not a number": ["--epochs", "abc"],
    "unknown flag": ["--bogus"],
    "seeds missing": ["--seeds"],
    "lrs not numbers": ["--lrs", "0.1", "x"],
    "unknown study": ["--study", "big"],
    "device": ["--device", "tpu"],
    "plot_only and fresh": ["--plot_only", "--fresh"],
    "lr zero": ["--lrs", "0"],
    "duplicate seeds": ["--seeds", "1", "1"],
}


@pytest.mark.parametrize("flags", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flag_is_one_line(flags, tmp_path, monkeypatch, capsys, fake_train):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(["--results", "r.json", *flags], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "error" in err, err
    assert os.listdir(tmp_path) == [] and fake_train.calls == []


def test_help_names_the_data_default(monkeypatch, capsys):
    code, out, _ = cli(["--help"], monkeypatch, capsys)
    assert code == 0 and "CIFAR10_DATA_DIR" in out and "extended" in out


def test_refused_results_file_on_the_command_line(results_copy, monkeypatch, capsys, fake_train):
    results_copy.write_bytes(b'{"settings": {"epochs": 1}, "runs": [')
    code, _, err = cli(["--results", os.fspath(results_copy), "--no_progress"], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and os.fspath(results_copy) in err, err
    assert sorted(os.listdir(results_copy.parent)) == ["results.json"] and fake_train.calls == []


@pytest.mark.parametrize("flag", ["--results", "--figure_dir"])
def test_unwritable_output_is_refused_before_training(flag, tmp_path, monkeypatch, capsys, fake_train):
    (tmp_path / "afile").write_text("a file, not a directory")
    target = os.fspath(tmp_path / "afile" / ("r.json" if flag == "--results" else "figs"))
    code, _, err = cli(["--epochs", "1", flag, target, "--no_progress"], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "afile" in err, err
    assert sorted(os.listdir(tmp_path)) == ["afile"] and fake_train.calls == []


def test_directory_in_place_of_a_figure_is_refused_before_training(tmp_path, monkeypatch, capsys, fake_train):
    (tmp_path / "figs" / "layer_stats.png").mkdir(parents=True)
    args = ["--results", os.fspath(tmp_path / "r.json"), "--figure_dir", os.fspath(tmp_path / "figs")]
    code, _, err = cli(args, monkeypatch, capsys)
    assert code == 2 and "layer_stats.png" in err and fake_train.calls == []


def test_plot_only_redraws_without_training(results_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_mlp_pytorch, "train", refuse_to_train)
    monkeypatch.setattr(cifar10_utils, "get_cifar10", refuse_to_train)
    before = results_copy.read_bytes()
    figures = tmp_path / "figs"
    args = ["--results", os.fspath(results_copy), "--figure_dir", os.fspath(figures), "--plot_only"]
    code, out, err = cli(args, monkeypatch, capsys)  # the study comes from the file, not --study
    assert code == 0, err
    assert sorted(p.name for p in figures.iterdir()) == sorted(cbn.FIGURES["extended"])
    assert results_copy.read_bytes() == before


def test_plot_only_without_results_is_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = cli(
        ["--results", os.fspath(tmp_path / "missing.json"), "--plot_only"], monkeypatch, capsys
    )
    assert code == 2 and err.count("\n") == 1 and "missing.json" in err


def test_interrupt_is_one_line_and_keeps_finished_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_mlp_pytorch, "train", FakeTrain(interrupt_on=2))
    code, _, err = cli(["--results", os.fspath(tmp_path / "r.json"), "--no_progress"], monkeypatch, capsys)
    assert code == 130 and err.count("\n") == 1 and "interrupted" in err
    assert len(strict_json((tmp_path / "r.json").read_text())["runs"]) == 1
    assert sorted(os.listdir(tmp_path)) == ["r.json"], "a lock or temporary file was left behind"
