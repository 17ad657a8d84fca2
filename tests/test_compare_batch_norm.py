"""compare_batch_norm.py: the results file, resuming, refusing bad files, the figures and the command line.

Everything runs on made-up CIFAR-10 batches (tests/conftest.py). train() splits off the default
5000 validation images, so the fake set holds 5 x 1026 training images: 130 left to train on
(enough for the command line's batch size of 128) and 100 test images. One tiny real study
(2 architectures x 2 batch norm x 2 seeds, 2 epochs) is trained once for the module; the
resume / refuse tests use a fake train() that records its calls.
"""

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PNG, REPO_ROOT, write_fake_cifar

import cifar10_utils
import compare_batch_norm as cbn
import train_common
import train_mlp_pytorch

N_PER_BATCH, N_TEST = 1026, 100
N_VAL = 5000  # train() uses get_cifar10's default validation_size
ARCHS, EPOCHS, SEEDS, BATCH = [[8], [8, 4]], 2, [1, 2], 64
STUDY = {"architectures": ARCHS, "epochs": EPOCHS, "seeds": SEEDS, "batch_size": BATCH}
PLANNED = [(tuple(a), bn, s) for a in ARCHS for bn in (False, True) for s in SEEDS]  # 8 runs
RUN_KEYS = {
    "hidden_dims",
    "use_batch_norm",
    "seed",
    "train_accuracy",
    "train_loss",
    "val_accuracy",
    "best_epoch",
    "test_accuracy",
    "wall_time",
    "device",
}
FIGURES = ["train_accuracy.png", "val_accuracy.png", "test_accuracy.png", "test_accuracy.md"]
SCRIPT = os.fspath(REPO_ROOT / "compare_batch_norm.py")


def key(run):
    return (tuple(run["hidden_dims"]), run["use_batch_norm"], run["seed"])


def strict_json(text):
    """json.loads that also refuses NaN / Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


class FakeTrain:
    """Stands in for train_mlp_pytorch.train: plausible, deterministic logging_info, calls recorded.

    ``interrupt_on=k`` raises KeyboardInterrupt on the k-th call (1-based), as Ctrl-C would.
    """

    def __init__(self, interrupt_on=None):
        self.calls, self.interrupt_on = [], interrupt_on

    def __call__(self, hidden_dims, lr, use_batch_norm, batch_size, epochs, seed, data_dir, **kwargs):
        self.calls.append(
            {
                "hidden_dims": list(hidden_dims),
                "lr": lr,
                "use_batch_norm": use_batch_norm,
                "batch_size": batch_size,
                "epochs": epochs,
                "seed": seed,
                "data_dir": data_dir,
                **kwargs,
            }
        )
        if len(self.calls) == self.interrupt_on:
            raise KeyboardInterrupt
        base = 0.2 + 0.02 * len(hidden_dims) + 0.05 * use_batch_norm + 0.003 * seed
        val = [round(base + 0.01 * e, 4) for e in range(epochs)]
        info = {
            "train_loss": [2.3 - 0.1 * e for e in range(epochs)],
            "train_accuracy": [base + 0.02 * e for e in range(epochs)],
            "val_accuracy": val,
            "batch_loss": [2.3] * epochs,
            "epoch_time": [0.01] * epochs,
            "best_epoch": epochs,
            "device": "cpu",
        }
        return None, val, round(base - 0.01, 4), info

    def keys(self):
        return [(tuple(c["hidden_dims"]), c["use_batch_norm"], c["seed"]) for c in self.calls]


def refuse_to_train(*args, **kwargs):
    raise AssertionError("train() was called")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return os.fspath(write_fake_cifar(root / "data", n_per_batch=N_PER_BATCH, seed=0, n_test=N_TEST).data_dir)


@pytest.fixture(scope="module")
def real_study(tmp_path_factory, data_dir):
    """The tiny study really trained once: (results file, returned results, file bytes)."""
    path = tmp_path_factory.mktemp("study") / "results.json"
    results = cbn.train_models(os.fspath(path), data_dir=data_dir, progress=False, **STUDY)
    return path, results, path.read_bytes()


@pytest.fixture
def results_copy(real_study, tmp_path):
    """A private copy of the real study's results file, in its own directory."""
    path = tmp_path / "copy" / "results.json"
    path.parent.mkdir()
    path.write_bytes(real_study[2])
    return path


@pytest.fixture
def fake_train(monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(train_mlp_pytorch, "train", fake)
    return fake


# ---------------------------------------------------------------- the results file


def test_results_file_holds_every_run(real_study):
    path, results, raw = real_study
    text = raw.decode()
    assert strict_json(text) == results, "the file is not what train_models returned"
    # indented, one value per line: readable and diffable
    assert text.count("\n") > 100 and re.search(r'^ +"use_batch_norm": (true|false),$', text, re.M)
    assert results["settings"] == {
        "architectures": ARCHS,
        "epochs": EPOCHS,
        "lr": 0.1,
        "batch_size": BATCH,
        "seeds": SEEDS,
    }
    runs = results["runs"]
    assert len(runs) == 8 and sorted(map(key, runs)) == sorted(PLANNED)
    for run in runs:
        assert set(run) >= RUN_KEYS, RUN_KEYS - set(run)
        for curve in ("train_accuracy", "train_loss", "val_accuracy"):
            assert len(run[curve]) == EPOCHS, (curve, run[curve])
        # the numbers come from the fake data: 2 batches of 64 per epoch, 5000 validation, 100 test
        for a in run["train_accuracy"]:
            assert 0 <= a <= 1 and a * 2 * BATCH == pytest.approx(round(a * 2 * BATCH), abs=1e-6)
        for a in run["val_accuracy"]:
            assert 0 <= a <= 1 and a * N_VAL == pytest.approx(round(a * N_VAL), abs=1e-6)
        assert 0 <= run["test_accuracy"] <= 1
        assert run["test_accuracy"] * N_TEST == pytest.approx(round(run["test_accuracy"] * N_TEST), abs=1e-6)
        assert all(np.isfinite(run["train_loss"])) and min(run["train_loss"]) > 0
        assert run["best_epoch"] == 1 + int(np.argmax(run["val_accuracy"]))
        assert run["wall_time"] > 0 and run["device"] == "cpu"
    # the runs really differ by seed and by batch norm (nothing is copied from one to another)
    by_key = {key(r): r for r in runs}
    for arch in ARCHS:
        a = tuple(arch)
        assert by_key[a, False, 1]["train_loss"] != by_key[a, False, 2]["train_loss"]
        assert by_key[a, False, 1]["train_loss"] != by_key[a, True, 1]["train_loss"]


def test_train_gets_each_runs_settings(fake_train, tmp_path):
    path = tmp_path / "r.json"
    results = cbn.train_models(os.fspath(path), data_dir="somewhere/", progress=False, lr=0.05, **STUDY)
    assert sorted(fake_train.keys()) == sorted(PLANNED)
    for call in fake_train.calls:
        assert (call["lr"], call["batch_size"], call["epochs"], call["data_dir"]) == (
            0.05,
            BATCH,
            EPOCHS,
            "somewhere/",
        )
    # what the fake returned is what is recorded
    for run in results["runs"]:
        _, val, test, info = FakeTrain()(
            run["hidden_dims"], 0.05, run["use_batch_norm"], 64, 2, run["seed"], ""
        )
        assert (run["val_accuracy"], run["test_accuracy"], run["train_loss"]) == (
            val,
            test,
            info["train_loss"],
        )
        assert (run["train_accuracy"], run["best_epoch"]) == (info["train_accuracy"], info["best_epoch"])
    assert strict_json(path.read_text()) == results


def test_rerun_trains_nothing(results_copy, real_study, monkeypatch):
    monkeypatch.setattr(train_mlp_pytorch, "train", refuse_to_train)
    results = cbn.train_models(os.fspath(results_copy), data_dir="no/data/here", progress=False, **STUDY)
    assert results == real_study[1]
    assert results_copy.read_bytes() == real_study[2]


def test_interrupted_study_resumes(monkeypatch, tmp_path):
    path = tmp_path / "study" / "r.json"
    interrupted = FakeTrain(interrupt_on=3)
    monkeypatch.setattr(train_mlp_pytorch, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cbn.train_models(os.fspath(path), progress=False, **STUDY)
    assert len(interrupted.calls) == 3
    saved = strict_json(path.read_text())
    assert [key(r) for r in saved["runs"]] == interrupted.keys()[:2]
    assert os.listdir(path.parent) == ["r.json"], "a temporary file was left behind"

    resumed = FakeTrain()
    monkeypatch.setattr(train_mlp_pytorch, "train", resumed)
    results = cbn.train_models(os.fspath(path), progress=False, **STUDY)
    assert len(resumed.calls) == 6
    assert sorted(resumed.keys()) == sorted(set(PLANNED) - set(interrupted.keys()[:2]))
    assert sorted(map(key, results["runs"])) == sorted(PLANNED)
    assert results["runs"][:2] == saved["runs"], "finished runs were changed"
    assert strict_json(path.read_text()) == results


def test_interrupt_while_saving_keeps_the_previous_file(monkeypatch, tmp_path, fake_train):
    """Ctrl-C between writing the new file and renaming it: the old file stays, whole."""
    path = tmp_path / "r.json"
    real_replace, n = os.replace, []

    def replace(src, dst):
        n.append(dst)
        if len(n) == 3:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(train_common.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        cbn.train_models(os.fspath(path), progress=False, **STUDY)
    monkeypatch.setattr(train_common.os, "replace", real_replace)
    assert [key(r) for r in strict_json(path.read_text())["runs"]] == fake_train.keys()[:2]
    assert os.listdir(tmp_path) == ["r.json"], "a temporary file was left behind"
    cbn.train_models(os.fspath(path), progress=False, **STUDY)
    assert len(fake_train.calls) == 3 + 6  # the unsaved third run is trained again
    assert sorted(map(key, strict_json(path.read_text())["runs"])) == sorted(PLANNED)


# ---------------------------------------------------------------- refusing files


def _truncated(raw):
    return raw[: len(raw) // 2]


CORRUPT = {
    "empty": b"",
    "not JSON": b"epoch 1: loss 2.3\n",
    "truncated": _truncated,
    "not UTF-8": b"\xff\xfe\x00garbage",
    "a list": b"[]\n",
    "a number": b"42\n",
    "no runs": lambda raw: json.dumps({"settings": json.loads(raw)["settings"]}).encode(),
    "runs not a list": lambda raw: json.dumps({"settings": json.loads(raw)["settings"], "runs": {}}).encode(),
    "no settings": b'{"runs": []}',
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_results_file_is_refused(content, results_copy, real_study, fake_train):
    raw = content(real_study[2]) if callable(content) else content
    results_copy.write_bytes(raw)
    with pytest.raises(ValueError, match=re.escape(os.fspath(results_copy))):
        cbn.train_models(os.fspath(results_copy), progress=False, **STUDY)
    assert results_copy.read_bytes() == raw, "the refused file was changed"
    assert fake_train.calls == []
    with pytest.raises(ValueError, match=re.escape(os.fspath(results_copy))):
        cbn.plot_results(os.fspath(results_copy))
    assert sorted(os.listdir(results_copy.parent)) == ["results.json"]

    results = cbn.train_models(os.fspath(results_copy), progress=False, fresh=True, **STUDY)
    assert len(fake_train.calls) == 8 and sorted(map(key, results["runs"])) == sorted(PLANNED)
    assert strict_json(results_copy.read_text()) == results


OTHER_SETTINGS = {
    "epochs": {"epochs": 3},
    "fewer seeds": {"seeds": [1]},
    "more seeds": {"seeds": [1, 2, 3]},
    "lr": {"lr": 0.05},
    "batch size": {"batch_size": 32},
    "architectures": {"architectures": [[8]]},
}


@pytest.mark.parametrize("change", OTHER_SETTINGS.values(), ids=OTHER_SETTINGS.keys())
def test_results_made_with_other_settings_are_refused(change, results_copy, real_study, fake_train):
    study = {**STUDY, **change}
    with pytest.raises(ValueError, match=re.escape(os.fspath(results_copy))):
        cbn.train_models(os.fspath(results_copy), progress=False, **study)
    assert results_copy.read_bytes() == real_study[2]
    assert fake_train.calls == []

    results = cbn.train_models(os.fspath(results_copy), progress=False, fresh=True, **study)
    settings = {"lr": 0.1, **study}
    assert results["settings"] == settings
    assert (
        len(fake_train.calls)
        == len(results["runs"])
        == 2 * len(settings["architectures"]) * len(settings["seeds"])
    )
    assert strict_json(results_copy.read_text()) == results


# ---------------------------------------------------------------- figures


def check_png(path):
    import matplotlib.pyplot as plt

    data = Path(path).read_bytes()
    assert data.startswith(PNG) and len(data) > 5000, path
    assert min(plt.imread(path).shape[:2]) > 200, path


def read_table(path):
    """{(architecture str, 'yes'/'no'): cells} from a Markdown table, checking its frame."""
    lines = Path(path).read_text().strip().splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert len({len(row) for row in cells}) == 1, "rows with different numbers of cells"
    assert all(re.fullmatch(r":?-{3,}:?", c) for c in cells[1]), "no Markdown separator row"
    rows = {(row[0], row[1]): row for row in cells[2:]}
    assert len(rows) == len(cells) - 2, "duplicate rows"
    return cells[0], rows


def test_plot_results_from_the_file_alone(results_copy, real_study, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mlp_pytorch, "train", refuse_to_train)
    monkeypatch.setattr(cifar10_utils, "get_cifar10", refuse_to_train)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    figure_dir = tmp_path / "figures" / "new"
    paths = cbn.plot_results(os.fspath(results_copy), os.fspath(figure_dir))
    assert sorted(os.path.basename(p) for p in paths) == sorted(FIGURES)
    assert sorted(os.listdir(figure_dir)) == sorted(FIGURES)
    assert os.listdir(empty) == []
    for name in FIGURES[:3]:
        check_png(figure_dir / name)

    header, rows = read_table(figure_dir / "test_accuracy.md")
    assert any("test" in h.lower() for h in header)
    runs = real_study[1]["runs"]
    assert sorted(rows) == sorted((str(a), bn) for a in ARCHS for bn in ("no", "yes"))
    for arch, bn in itertools.product(ARCHS, (False, True)):
        row = rows[str(arch), "yes" if bn else "no"]
        tests = [r["test_accuracy"] for r in runs if r["hidden_dims"] == arch and r["use_batch_norm"] == bn]
        assert "2" in row, row  # the number of seeds
        mean = next(c for c in row if "±" in c)
        value, spread = (float(x) for x in mean.split("±"))
        assert value == pytest.approx(np.mean(tests), abs=6e-5) and 0 <= spread <= np.ptp(tests) + 1e-4


def test_plot_results_defaults_to_beside_the_results_file(results_copy, monkeypatch):
    monkeypatch.setattr(train_mlp_pytorch, "train", refuse_to_train)
    paths = cbn.plot_results(os.fspath(results_copy))
    assert sorted(os.listdir(results_copy.parent)) == sorted(["results.json", *FIGURES])
    assert {os.path.dirname(os.path.abspath(p)) for p in paths} == {os.fspath(results_copy.parent)}


def test_one_seed_table_has_no_spread(tmp_path, fake_train):
    path = tmp_path / "r.json"
    cbn.train_models(os.fspath(path), progress=False, **{**STUDY, "seeds": [7]})
    cbn.plot_results(os.fspath(path))
    text = (tmp_path / "test_accuracy.md").read_text()
    _, rows = read_table(tmp_path / "test_accuracy.md")
    assert len(rows) == 4 and "±" not in text


def test_plot_results_refuses_a_file_without_runs(tmp_path):
    path = tmp_path / "r.json"
    train_common.write_json(path, {"settings": cbn.study_settings(**STUDY), "runs": []})
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
    assert "PLOTTED 4" in proc.stdout
    assert sorted(os.listdir(work / "figures")) == sorted(FIGURES)


# ---------------------------------------------------------------- command line


def run_cli(args, cwd):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_command_line_trains_then_plots(data_dir, tmp_path):
    """The default three architectures, one epoch and one seed: six runs of two batches."""
    results = tmp_path / "out" / "r.json"
    args = ["--data_dir", data_dir, "--epochs", "1", "--seeds", "1", "--results", os.fspath(results)]
    proc = run_cli([*args, "--no_progress"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert sorted(os.listdir(results.parent)) == sorted(["r.json", *FIGURES])
    study = strict_json(results.read_text())
    assert study["settings"] == {
        "architectures": [[128], [256, 128], [512, 256, 128]],
        "epochs": 1,
        "lr": 0.1,
        "batch_size": 128,
        "seeds": [1],
    }
    assert len(study["runs"]) == 6 and all(len(r["val_accuracy"]) == 1 for r in study["runs"])
    assert not (tmp_path / "results").exists(), "wrote to the default results path too"

    # rerun: nothing to train, the results file is kept as it is, the figures are redrawn elsewhere
    raw = results.read_bytes()
    proc = run_cli([*args, "--no_progress", "--figure_dir", "figs"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results.read_bytes() == raw
    assert sorted(os.listdir(tmp_path / "figs")) == sorted(FIGURES)


BAD_FLAGS = {
    "epochs not a number": ["--epochs", "abc"],
    "unknown flag": ["--bogus"],
    "seeds missing": ["--seeds"],
    "seeds not numbers": ["--seeds", "1", "x"],
    "device": ["--device", "tpu"],
}


@pytest.mark.parametrize("flags", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flag_is_one_line(flags, tmp_path):
    proc = run_cli(["--results", os.fspath(tmp_path / "r.json"), *flags], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["not JSON", "other settings"])
def test_refused_results_file_on_the_command_line(kind, results_copy, data_dir, tmp_path):
    if kind == "not JSON":
        results_copy.write_bytes(b'{"settings": {"epochs": 1}, "runs": [')
    raw = results_copy.read_bytes()
    proc = run_cli(
        ["--data_dir", data_dir, "--epochs", "1", "--results", os.fspath(results_copy), "--no_progress"],
        tmp_path,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and os.fspath(results_copy) in proc.stderr
    assert results_copy.read_bytes() == raw
    assert sorted(os.listdir(results_copy.parent)) == ["results.json"]


@pytest.mark.parametrize("flag", ["--results", "--figure_dir"])
def test_unwritable_output_is_refused_before_training(flag, data_dir, tmp_path):
    (tmp_path / "afile").write_text("a file, not a directory")
    target = os.fspath(tmp_path / "afile" / ("r.json" if flag == "--results" else "figs"))
    proc = run_cli(["--data_dir", data_dir, "--epochs", "1", flag, target, "--no_progress"], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "afile" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["afile"], "trained or wrote before refusing"


def test_results_path_that_is_a_directory_is_refused(tmp_path, fake_train):
    (tmp_path / "r.json").mkdir()
    with pytest.raises(ValueError, match="directory"):
        cbn.train_models(os.fspath(tmp_path / "r.json"), fresh=True, epochs=1)
    assert fake_train.calls == []


# ---------------------------------------------------------------- known bugs


def test_plot_results_of_an_interrupted_study(monkeypatch, tmp_path):
    path = tmp_path / "r.json"
    monkeypatch.setattr(train_mlp_pytorch, "train", FakeTrain(interrupt_on=3))
    with pytest.raises(KeyboardInterrupt):
        cbn.train_models(os.fspath(path), progress=False, **STUDY)
    assert len(strict_json(path.read_text())["runs"]) == 2  # both ([8], no batch norm)
    paths = cbn.plot_results(os.fspath(path))
    assert sorted(os.path.basename(p) for p in paths) == sorted(FIGURES)


@pytest.mark.parametrize("function", ["train_models", "plot_results"])
def test_malformed_run_entry_is_a_value_error(function, results_copy, real_study, fake_train):
    study = json.loads(real_study[2])
    study["runs"][0] = {"hidden_dims": [8]}
    results_copy.write_text(json.dumps(study))
    with pytest.raises(ValueError, match=re.escape(os.fspath(results_copy))):
        if function == "train_models":
            cbn.train_models(os.fspath(results_copy), progress=False, **STUDY)
        else:
            cbn.plot_results(os.fspath(results_copy))


def test_duplicate_seeds_are_not_trained_twice(fake_train, tmp_path):
    path = os.fspath(tmp_path / "r.json")
    try:
        cbn.train_models(path, progress=False, **{**STUDY, "seeds": [1, 1]})
    except ValueError:
        return  # refusing them is fine too
    assert len(fake_train.calls) == len(set(fake_train.keys())) == 4


def test_results_and_figures_respect_the_umask(fake_train, tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "r.json"
        cbn.train_models(os.fspath(path), progress=False, **STUDY)
        cbn.plot_results(os.fspath(path))
    finally:
        os.umask(old)
    modes = {name: os.stat(tmp_path / name).st_mode & 0o777 for name in ["r.json", *FIGURES]}
    assert modes == dict.fromkeys(modes, 0o644)


def test_plot_only_redraws_without_training(results_copy, tmp_path):
    """--plot_only takes any finished study, whatever its settings, and trains nothing."""
    before = results_copy.read_bytes()
    figures = tmp_path / "figs"
    no_data = os.fspath(tmp_path / "no_data")  # training would need data from here
    args = ["--results", os.fspath(results_copy), "--figure_dir", os.fspath(figures), "--data_dir", no_data]
    proc = run_cli([*args, "--plot_only"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in figures.iterdir()) == sorted(FIGURES)
    assert results_copy.read_bytes() == before
    assert not os.path.exists(no_data)


def test_plot_only_without_results_is_one_line(tmp_path):
    proc = run_cli(["--results", os.fspath(tmp_path / "missing.json"), "--plot_only"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "missing.json" in proc.stderr
