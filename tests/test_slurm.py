"""The job files of jobs/ on a real SLURM: a one-node cluster started here (tests/slurm_cluster.py)
runs a tiny study as a job array with jobs/submit_study.sh, then the merge as the dependent job, and
the merged results must equal the same study trained in one process, run for run.

Skipped, with the reason, only where Debian's slurmctld, slurmd, slurm-client and munge are absent
(.ci/run installs them) or when not root (slurmd runs each job as its user).
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT, write_fake_cifar
from slurm_cluster import ClusterError, OneNodeCluster, default_partition, missing_binaries, running_cluster

TINY = ["--hidden_dims", "16", "--seeds", "42", "43", "--epochs", "1"]  # 4 runs: BN on/off x 2 seeds
TIMING = ("wall_time", "epoch_time")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The environment of a running cluster's clients: the machine's own when one answers, else a
    one-node cluster started for this module and stopped after it."""
    missing = missing_binaries()
    if missing:
        needed = "apt-get install slurmctld slurmd slurm-client munge"
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): {needed}")
    if running_cluster():
        yield dict(os.environ)
        return
    if os.geteuid() != 0:
        pytest.skip("starting a one-node SLURM cluster needs root")
    one_node = OneNodeCluster(tmp_path_factory.mktemp("slurm"))
    try:
        one_node.start()
    except ClusterError as error:
        pytest.fail(f"the one-node cluster did not start: {error}")
    try:
        yield one_node.client_env()
    finally:
        one_node.stop()


def without_timing(run):
    return {k: v for k, v in run.items() if k not in TIMING}


def submit_env(cluster, tmp_path, data_dir):
    """What submit_study.sh reads: the tiny study on the cluster's default partition, 3 tasks of 1 CPU."""
    return {
        **cluster,
        "STUDY": "default",
        "RESULTS": os.fspath(tmp_path / "array" / "results.json"),
        "DATA": os.fspath(data_dir),
        "EXTRA_ARGS": " ".join(TINY),
        "MODULES": "",  # no module system and no conda here: the test's own Python
        "CONDA_ENV": "",
        "PYTHON": sys.executable,
        "PARTITION": default_partition(cluster),
        "CPUS": "1",
        "TIME": "00:10:00",
        "TASKS": "3",  # 4 runs over 3 tasks: task 0 trains two
        "LOGS": os.fspath(tmp_path / "logs"),
        "WAIT": "1",  # sbatch --wait on the merge: returns once it has run
        "OMP_NUM_THREADS": "1",  # the same thread count as the one-process run
    }


def submit_study(env):
    return subprocess.run(["bash", "jobs/submit_study.sh", "default", "cpu"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_a_study_as_a_job_array_and_its_merge_equal_one_process(cluster, tmp_path):
    data_dir = write_fake_cifar(tmp_path / "data", n_per_batch=1100, seed=0, n_test=100).data_dir
    env = submit_env(cluster, tmp_path, data_dir)
    submit = submit_study(env)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted((tmp_path / "logs").glob("*")))
    assert submit.returncode == 0, f"{submit.stdout}\n{submit.stderr}\n{logs}"
    assert "4 runs in 3 tasks" in submit.stdout
    assert len(list((tmp_path / "logs").glob("bn_study_*_*.out"))) == 3, logs  # logs %x_%A_%a
    merged = json.loads((tmp_path / "array" / "results.json").read_text())
    assert (tmp_path / "array" / "paired_differences.md").exists()  # the merge drew the study

    one = tmp_path / "one" / "results.json"
    command = [sys.executable, "compare_batch_norm.py", "--study", "default", *TINY, "--device", "cpu"]
    command += ["--data_dir", os.fspath(data_dir), "--results", os.fspath(one), "--no_progress"]
    local = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert local.returncode == 0, local.stderr
    expected = json.loads(one.read_text())
    assert len(merged["runs"]) == len(expected["runs"]) == 4
    assert [without_timing(r) for r in merged["runs"]] == [without_timing(r) for r in expected["runs"]]


def test_the_merge_never_runs_after_a_failed_task(cluster, tmp_path):
    """afterok: a task that fails (here: no data) leaves the merge unrun, so no results file holds a
    part of the study; the merge waits for a rerun of the array or is cancelled."""
    env = {**submit_env(cluster, tmp_path, tmp_path / "no_data"), "WAIT": ""}
    submit = submit_study(env)
    assert submit.returncode == 0, submit.stderr
    merge_id = re.search(r"merge: job (\d+)", submit.stdout).group(1)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = subprocess.run(["scontrol", "-o", "show", "job", merge_id], env=cluster,
                                 capture_output=True, text=True, timeout=20)  # fmt: skip
            # gone from the controller, cancelled (kill_invalid_depend), or pending forever
            if job.returncode != 0 or re.search(
                r"JobState=CANCELLED|Reason=DependencyNeverSatisfied", job.stdout
            ):
                break
            assert not re.search(r"JobState=(RUNNING|COMPLETED|FAILED)", job.stdout), job.stdout
            time.sleep(1)
        else:
            pytest.fail(f"the merge {merge_id} neither ran nor was held back in 120 s: {job.stdout}")
    finally:
        subprocess.run(["scancel", merge_id], env=cluster, capture_output=True, timeout=20, check=False)
    assert not list((tmp_path / "logs").glob("bn_merge_*.out"))
    assert not (tmp_path / "array" / "results.json").exists()
    failed = sorted((tmp_path / "logs").glob("bn_study_cpu_*.out"))
    assert len(failed) == 3 and all(
        "no " in p.read_text() and "cifar-10-batches-py" in p.read_text() for p in failed
    )
