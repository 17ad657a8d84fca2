"""Both trainers' command lines, each run in its own process: where the data is looked for, what is
refused before training, a diverging run, a failed save, and what --no_progress leaves on screen.

The data are made-up CIFAR-10 batches (tests/conftest.py: 500 training, 5000 validation and 100
test images). Every run gets CIFAR10_URL pointing at a closed port on 127.0.0.1, so no test can
reach the network, and no CIFAR10_DATA_DIR unless the test sets one. The runs of a test are
started together and checked one by one.

Exit codes (cli.run_cli): 0 done, 2 bad input or a failed save, 3 diverged.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

NUMPY, TORCH = "train_mlp_numpy.py", "train_mlp_pytorch.py"
MODEL_FILE = {NUMPY: "model.npz", TORCH: "model.pt"}
SCRIPTS = [NUMPY, TORCH]
RUN_FILES = {"log.json", "loss_curve.png", "first_layer_weights.png", "confusion_matrix.png"}

# Run a trainer with os.replace failing as on a full disk for every file under $FAIL_SAVE_UNDER:
# the save fails after training, at the step that would put the first finished file in place.
# (Running as root, a read-only directory would not stop the write: root ignores permissions.)
FULL_DISK = """
import errno, os, runpy, sys
under, real_replace = os.path.abspath(os.environ["FAIL_SAVE_UNDER"]), os.replace

def replace(src, dst, **kwargs):
    if os.path.abspath(dst).startswith(under + os.sep):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src)
    return real_replace(src, dst, **kwargs)

os.replace = replace
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: a download from it fails at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def cli_env(**extra):
    """The environment of a trainer run: no network, no CIFAR10_DATA_DIR unless given, Agg plots,
    one thread (several runs share the machine at once; torch's and BLAS's spinning threads
    would turn each tiny run into seconds)."""
    drop = ("CIFAR10_URL", "CIFAR10_MD5", "CIFAR10_DATA_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(CIFAR10_URL=closed_port_url(), MPLBACKEND="Agg", OMP_NUM_THREADS="1", **extra)
    return env


def start(script, args, wrapper=None, **env):
    """Start `python script args` (or `python -c wrapper script args`) in the repository root."""
    command = [sys.executable, *(["-c", wrapper] if wrapper else []), script, *args]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout=300):
    stdout, stderr = proc.communicate(timeout=timeout)
    assert "Traceback" not in stderr, stderr
    return proc.returncode, stdout, stderr


def tiny_args(output_dir, *extra, data_dir=None, epochs=1):
    args = ["--hidden_dims", "16", "--batch_size", "32", "--epochs", str(epochs), "--seed", "2"]
    args += ["--output_dir", os.fspath(output_dir), "--no_progress", *extra]
    return args + (["--data_dir", os.fspath(data_dir)] if data_dir is not None else [])


def device_args(script):
    return ["--device", "cpu"] if script == TORCH else []


def one_error_line(stderr, script, fragment):
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"{script}: error:"), stderr
    assert fragment in stderr, stderr


@pytest.fixture
def all_started():
    """Popen objects registered here are killed if a test fails before collecting them."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# ---------------------------------------------------------------- where the data is looked for


def test_data_dir_defaults_to_cifar10_data_dir(data_dir, tmp_path, all_started):
    runs = {}
    for script in SCRIPTS:
        out = tmp_path / script
        runs[script] = out
        all_started.append(start(script, [*tiny_args(out), *device_args(script)], CIFAR10_DATA_DIR=data_dir))
    for proc, (script, out) in zip(all_started, runs.items(), strict=True):
        code, stdout, stderr = finish(proc)
        assert code == 0, stderr
        log = json.loads((out / "log.json").read_text())
        assert log["args"]["data_dir"] == data_dir
        assert sorted(os.listdir(out)) == sorted(RUN_FILES | {MODEL_FILE[script]})


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_names_the_data_dir_default(script):
    result = subprocess.run(
        [sys.executable, script, "--help"], cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "CIFAR10_DATA_DIR" in result.stdout and "data/" in result.stdout


# ---------------------------------------------------------------- refused before training


def test_refused_before_training(tmp_path, all_started):
    """Each case: one line, exit 2, no data read (the data dir does not exist and is not made),
    no epoch trained, nothing written."""
    missing = tmp_path / "no_data"
    cases = {}
    for script in SCRIPTS:
        big = tmp_path / f"big_{script}"
        cases[script, "too_big"] = (big, ["--hidden_dims", "1000000000"], "memory")
        blocked = tmp_path / f"blocked_{script}"
        (blocked / MODEL_FILE[script]).mkdir(parents=True)
        cases[script, "dir_in_place_of_model"] = (blocked, [], MODEL_FILE[script])
    for (script, _), (out, extra, _) in cases.items():
        args = [*tiny_args(out, data_dir=missing), *device_args(script), *extra]
        all_started.append(start(script, args))
    for proc, ((script, name), (out, _, fragment)) in zip(all_started, cases.items(), strict=True):
        code, stdout, stderr = finish(proc, timeout=120)
        assert code == 2, (name, stderr)
        one_error_line(stderr, script, fragment)
        assert stdout == "", (name, stdout)  # not one epoch line
        assert not missing.exists()
        if name == "too_big":
            assert not out.exists()
        else:
            assert os.listdir(out) == [MODEL_FILE[script]]  # the directory in the way, and nothing else


def test_memory_that_runs_out_despite_the_check_is_one_line_exit_2(data_dir, tmp_path):
    """Under `ulimit -v` (common on shared clusters) the memory check sees the machine's free memory,
    lets a [200000] network pass, and the first weight matrix (4.6 GB in float64) cannot be
    allocated: one line and exit 2, not a MemoryError traceback. NumPy trainer only: importing
    torch under a 3 GB address-space limit is not this test's business."""
    resource = pytest.importorskip("resource")

    def limit_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    out = tmp_path / "out"
    args = [*tiny_args(out, data_dir=data_dir), "--hidden_dims", "200000"]
    proc = subprocess.Popen(
        [sys.executable, NUMPY, *args],
        cwd=REPO_ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_address_space,
    )
    code, stdout, stderr = finish(proc, timeout=120)
    assert code == 2, stderr
    one_error_line(stderr, NUMPY, "out of memory")
    assert "--hidden_dims" in stderr and not out.exists()


# ---------------------------------------------------------------- divergence


def test_divergence_is_saved_reported_and_exit_3(data_dir, tmp_path, all_started):
    outs = {script: tmp_path / script for script in SCRIPTS}
    for script, out in outs.items():
        args = [*tiny_args(out, "--lr", "1e6", data_dir=data_dir, epochs=3), *device_args(script)]
        all_started.append(start(script, args))
    for proc, (script, out) in zip(all_started, outs.items(), strict=True):
        code, stdout, stderr = finish(proc)
        assert code == 3, stderr
        one_error_line(stderr, script, "diverged at epoch ")
        assert "step" in stderr and "--lr" in stderr  # where, and what to try
        log = json.loads((out / "log.json").read_text())
        assert log["diverged"] is True and log["logging_info"]["diverged"] is True
        at = log["logging_info"]["diverged_at"]
        assert f"diverged at epoch {at['epoch']}, step {at['step']}" in stderr
        assert at["epoch"] >= 1 and at["step"] >= 1
        # diverged in its first epoch: no best model, so no test metrics and no confusion matrix
        assert log["test_metrics"] is None
        assert sorted(os.listdir(out)) == sorted(RUN_FILES - {"confusion_matrix.png"} | {MODEL_FILE[script]})


# ---------------------------------------------------------------- a failed save


def test_failed_save_is_one_line_exit_2_after_the_test_accuracy(data_dir, tmp_path, all_started):
    outs = {script: tmp_path / script for script in SCRIPTS}
    for script, out in outs.items():
        args = [*tiny_args(out, data_dir=data_dir), *device_args(script)]
        all_started.append(start(script, args, wrapper=FULL_DISK, FAIL_SAVE_UNDER=os.fspath(out)))
    for proc, (script, out) in zip(all_started, outs.items(), strict=True):
        code, stdout, stderr = finish(proc)
        assert code == 2, stderr
        one_error_line(stderr, script, os.strerror(28))  # ENOSPC: "No space left on device"
        assert os.fspath(out) in stderr  # names the file it could not write
        assert "test accuracy 0." in stdout  # the result is on screen before the save is tried
        # nothing half-written: no result and no temporary file (the directory may have been made)
        assert not out.exists() or os.listdir(out) == []


# ---------------------------------------------------------------- --no_progress


def test_no_progress_hides_the_bars_but_keeps_the_epoch_lines(data_dir, tmp_path, all_started):
    for script in SCRIPTS:
        args = [*tiny_args(tmp_path / script, data_dir=data_dir, epochs=2), *device_args(script)]
        all_started.append(start(script, args))
    for proc, script in zip(all_started, SCRIPTS, strict=True):
        code, stdout, stderr = finish(proc)
        assert code == 0, (script, stderr)
        assert stderr == ""  # tqdm draws its bars on stderr
        lines = stdout.splitlines()
        assert [line.split(":")[0] for line in lines[:2]] == ["epoch  1/2", "epoch  2/2"], stdout
        assert all("val acc" in line for line in lines[:2])
        assert "test accuracy" in lines[-1]
