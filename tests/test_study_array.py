"""A study run as a job array: --list, --task K --tasks N (one file per run beside --results),
--merge, a killed task's rerun, and the flags that do not go together.

The command-line tests start real processes on made-up CIFAR-10 batches (tests/conftest.py:
5 x 1026 training images, 130 left after the 5000 validation images, so one step per epoch at
the default study's batch 128). The tiny study is the default one with one architecture:
--hidden_dims 16 --seeds 42 43 --epochs 1, four runs. The others use a fake train().
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT, write_fake_cifar
from test_cli import cli_env
from test_compare_batch_norm import FakeTrain, strict_json

import compare_batch_norm as cbn
import train_mlp_pytorch
from support import study_config, study_runs, study_store
from support.cli import run_cli

SCRIPT = os.fspath(REPO_ROOT / "compare_batch_norm.py")
TINY = ["--study", "default", "--hidden_dims", "16", "--seeds", "42", "43", "--epochs", "1"]
TINY_SETTINGS = study_config.study_settings("default", architectures=[[16]], seeds=[42, 43], epochs=1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "data"
    return os.fspath(write_fake_cifar(root, n_per_batch=1026, seed=0, n_test=100).data_dir)


def start(args, cwd):
    return subprocess.Popen(
        [sys.executable, SCRIPT, *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out + err
    return out


def without_timing(run):
    return {k: v for k, v in run.items() if k not in study_config.TIMING_FIELDS}


def main_in_process(args, monkeypatch, capsys):
    """compare_batch_norm's command line in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["compare_batch_norm.py", *args])
    capsys.readouterr()
    try:
        run_cli(cbn.main, freeze_gc=False)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- the command line, for real


def test_list_prints_each_run_with_its_index(tmp_path):
    proc = subprocess.run(
        [sys.executable, SCRIPT, *TINY, "--device", "cpu", "--list"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "0\t[16] without batch norm, lr 0.1, seed 42",
        "1\t[16] with batch norm, lr 0.1, seed 42",
        "2\t[16] without batch norm, lr 0.1, seed 43",
        "3\t[16] with batch norm, lr 0.1, seed 43",
    ]
    assert os.listdir(tmp_path) == [], "--list wrote something"


def test_three_tasks_merged_equal_one_process(data_dir, tmp_path):
    """Tasks 0, 1, 2 of 3 (runs 0 and 3, 1, 2), then --merge; beside them the same study in one
    process: the same runs, in the same order, with the same numbers (timing aside)."""
    common = [*TINY, "--data_dir", data_dir, "--device", "cpu", "--no_progress"]
    array, single = tmp_path / "array" / "results.json", tmp_path / "single" / "results.json"
    tasks = [start([*common, "--task", str(k), "--tasks", "3", "--results", os.fspath(array)], tmp_path)
             for k in range(3)]  # fmt: skip
    one = start([*common, "--results", os.fspath(single)], tmp_path)
    outputs = [finish(proc) for proc in tasks]
    finish(one)
    assert [out.count("\nrun ") for out in outputs] == [2, 1, 1]
    assert "run 3 ([16] with batch norm, lr 0.1, seed 43): test accuracy" in outputs[0]
    planned = study_config.planned_runs(TINY_SETTINGS)
    assert sorted(os.listdir(array.parent / "results.runs")) == sorted(
        f"{study_store.run_id(run)}.json" for run in planned
    )
    assert not array.exists(), "a task wrote the results file"

    merged = finish(start([*TINY, "--merge", "--results", os.fspath(array)], tmp_path))
    assert "results in" in merged
    assert sorted(os.listdir(array.parent)) == sorted(
        ["results.json", "results.runs", *cbn.FIGURES["default"]]
    )
    first = (array.parent / "test_accuracy.md").read_text().splitlines()[0]
    assert first.startswith(
        "Made by `python compare_batch_norm.py --seeds 42 43 --epochs 1 --hidden_dims 16 "
        "--results array/results.json`:"
    )
    array_results, single_results = (strict_json(path.read_text()) for path in (array, single))
    assert array_results["settings"] == single_results["settings"] == TINY_SETTINGS
    assert len(array_results["runs"]) == len(single_results["runs"]) == 4
    for a, b in zip(array_results["runs"], single_results["runs"], strict=True):
        assert without_timing(a) == without_timing(b)
        assert a["norm"] == ("batch" if a["use_batch_norm"] else "none")


def test_killed_task_reruns_only_the_missing_runs(data_dir, tmp_path):
    """Killed (SIGKILL, as SLURM ends a task past its time) once its first run file exists; the
    rerun trains only the runs without a file and leaves the finished files as they were."""
    args = ["--hidden_dims", "16", "--seeds", "1", "2", "3", "--epochs", "1", "--data_dir", data_dir]
    args += ["--device", "cpu", "--no_progress"]
    args += ["--task", "0", "--tasks", "1", "--results", os.fspath(tmp_path / "results.json")]
    folder = tmp_path / "results.runs"
    task = start(args, tmp_path)
    deadline = time.monotonic() + 120
    while not (folder.is_dir() and any(name.endswith(".json") for name in os.listdir(folder))):
        assert task.poll() is None, task.communicate()
        assert time.monotonic() < deadline, "no run file after 120 s"
        time.sleep(0.01)
    task.send_signal(signal.SIGKILL)
    task.communicate()
    finished = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert 1 <= len(finished) < 6, "the task finished before it was killed: make its runs longer"

    out = finish(start(args, tmp_path))
    assert f"task 0 of 1: {6 - len(finished)} of its 6 runs to train ({len(finished)} finished before)" in out
    assert out.count("\nrun ") == 6 - len(finished)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json") if p.name in finished} == finished
    assert len(list(folder.glob("*.json"))) == 6


BAD_FLAGS = {
    "task not below tasks": (["--task", "3", "--tasks", "3"], "--task must be in 0..2"),
    "negative task": (["--task", "-1", "--tasks", "2"], "--task must be in 0..1"),
    "no tasks": (["--task", "0", "--tasks", "0"], "--tasks must be >= 1"),
    "task without tasks": (["--task", "0"], "go together"),
    "tasks without task": (["--tasks", "2"], "go together"),
    "merge with task": (["--merge", "--task", "0", "--tasks", "2"], "exclude each other"),
    "list with merge": (["--list", "--merge"], "exclude each other"),
    "fresh with task": (["--fresh", "--task", "0", "--tasks", "2"], "--fresh cannot go with --task"),
    "plot_only with merge": (["--plot_only", "--merge"], "--plot_only cannot go with --merge"),
    "hidden_dims zero": (["--list", "--hidden_dims", "0"], "hidden sizes must be > 0"),
    "merge with runs missing": (
        ["--merge", "--epochs", "1"],
        "6 of the study's 6 runs are missing (runs 0, 1",
    ),
}


@pytest.mark.parametrize("flags, message", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_array_flags_are_one_line(flags, message, tmp_path, monkeypatch, capsys):
    fake = FakeTrain()
    monkeypatch.setattr(train_mlp_pytorch, "train", fake)
    monkeypatch.chdir(tmp_path)
    code, out, err = main_in_process(["--results", "out/r.json", *flags], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert out == "" and fake.calls == []
    assert not (tmp_path / "out" / "r.json").exists() and not (tmp_path / "out" / "r.runs").exists()


# ---------------------------------------------------------------- shares, run files and merging


def test_each_run_belongs_to_one_share(monkeypatch, tmp_path, capsys):
    """Over N tasks every run is trained once, by task K mod N; a rerun of a task trains nothing."""
    fake = FakeTrain()
    monkeypatch.setattr(train_mlp_pytorch, "train", fake)
    settings = study_config.study_settings("extended", epochs=1)
    path = os.fspath(tmp_path / "r.json")
    shares = [study_runs.train_share(path, k, 7, settings, "no/data") for k in range(7)]
    assert sorted(sum(shares, [])) == list(range(60)) and shares[3] == list(range(3, 60, 7))
    planned = study_config.planned_runs(settings)
    assert [c[:4] for c in fake.calls] == [
        (tuple(planned[k]["hidden_dims"]), planned[k]["use_batch_norm"], planned[k]["lr"], planned[k]["seed"])
        for k in sum(shares, [])
    ]
    assert len(os.listdir(tmp_path / "r.runs")) == 60
    assert study_runs.train_share(path, 3, 7, settings, "no/data") == []
    assert f"task 3 of 7: 0 of its {len(shares[3])} runs to train" in capsys.readouterr().out

    # the check above fails where a task does not look at the finished run files
    monkeypatch.setattr(study_runs, "read_run_files", lambda results_filename: [])
    assert study_runs.train_share(path, 3, 7, settings, "no/data") == shares[3]


def test_merge_refuses_missing_runs_then_gathers_them(monkeypatch, tmp_path):
    monkeypatch.setattr(train_mlp_pytorch, "train", FakeTrain())
    path = tmp_path / "r.json"
    study_runs.train_share(os.fspath(path), 0, 2, TINY_SETTINGS, "no/data")
    with pytest.raises(ValueError, match=r"^2 of the study's 4 runs are missing \(runs 1, 3\)"):
        study_runs.merge_runs(os.fspath(path), TINY_SETTINGS)
    assert not path.exists()
    study_runs.train_share(os.fspath(path), 1, 2, TINY_SETTINGS, "no/data")
    results = study_runs.merge_runs(os.fspath(path), TINY_SETTINGS)
    assert strict_json(path.read_text()) == results
    assert [study_config.run_key(r) for r in results["runs"]] == [
        study_config.run_key(r) for r in study_config.planned_runs(TINY_SETTINGS)
    ]
    raw = path.read_bytes()
    study_runs.merge_runs(os.fspath(path), TINY_SETTINGS)  # nothing new: the file stays as it was
    assert path.read_bytes() == raw


def test_one_process_study_takes_the_run_files(monkeypatch, tmp_path):
    """Runs a task finished are not trained again by the one-process study, which writes them
    into the results file with its own."""
    monkeypatch.setattr(train_mlp_pytorch, "train", FakeTrain())
    path = os.fspath(tmp_path / "r.json")
    from_task = study_runs.train_share(path, 1, 3, TINY_SETTINGS, "no/data")
    fake = FakeTrain()
    monkeypatch.setattr(train_mlp_pytorch, "train", fake)
    results = cbn.train_models(path, progress=False, architectures=[[16]], seeds=[42, 43], epochs=1)
    assert from_task == [1] and len(fake.calls) == 3
    assert [study_config.run_key(r) for r in results["runs"]][0] == study_config.run_key(
        study_config.planned_runs(TINY_SETTINGS)[1]
    ), "the task's run was not taken first, before the training"
    assert len(results["runs"]) == 4 and strict_json(open(path).read()) == results


def test_run_files_are_named_by_the_run(tmp_path):
    settings = study_config.study_settings("extended")
    ids = [study_store.run_id(run) for run in study_config.planned_runs(settings)]
    assert len(set(ids)) == len(ids) == 60
    assert ids[1].startswith("128_batch_lr0.01_seed42_") and all("/" not in i and " " not in i for i in ids)
    run = study_config.planned_runs(settings)[7]
    assert study_store.run_id(dict(reversed(list(run.items())))) == study_store.run_id(run)
    assert study_store.run_id({**run, "epochs": 9}) != study_store.run_id(run)
    assert study_store.runs_dir(os.path.join("x", "results.json")) == os.path.join("x", "results.runs")
    assert study_store.runs_dir("x/results") == "x/results.runs"


def test_a_broken_run_file_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(train_mlp_pytorch, "train", FakeTrain())
    path = os.fspath(tmp_path / "r.json")
    study_runs.train_share(path, 0, 4, TINY_SETTINGS, "no/data")
    (tmp_path / "r.runs" / ".half.json.x1y2.tmp").write_text("{")  # a write cut short: skipped
    assert len(study_store.read_run_files(path)) == 1
    (tmp_path / "r.runs" / "other.json").write_text('{"hidden_dims": [16]}')
    with pytest.raises(ValueError, match="other.json is not a run"):
        study_store.read_run_files(path)


def test_results_from_before_norm_are_read(monkeypatch, tmp_path):
    """Files written before runs recorded norm (and settings their norms) are read as they were
    trained: without and with batch norm."""
    monkeypatch.setattr(train_mlp_pytorch, "train", FakeTrain())
    path = tmp_path / "r.json"
    results = cbn.train_models(os.fspath(path), progress=False, architectures=[[16]], epochs=1)
    old = json.loads(path.read_text())
    del old["settings"]["norms"]
    for run in old["runs"]:
        del run["norm"]
    path.write_text(json.dumps(old))
    assert study_store.load_results(os.fspath(path)) == results
