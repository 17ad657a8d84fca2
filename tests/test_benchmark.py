"""tools/benchmark.py on a small fake data set: every figure is reported, nothing is timed against a bound.

The figures of a run this small mean nothing; these tests check that each one is measured
and written (a finite number under its key), not how fast anything is.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import N_PER_BATCH, N_TEST, REPO_ROOT, write_fake_cifar

sys.path.insert(0, os.fspath(REPO_ROOT / "tools"))
import benchmark  # noqa: E402

REQUIRED_KEYS = {
    "numpy_step_vs_matmuls",
    "numpy_run_vs_steps",
    "numpy_run_peak_rss_vs_data",
    "torch_step_vs_matmuls",
    "numpy_bn_step_vs_step",
    "loader_speedup_vs_course_pipeline",
    "study_vs_flop_bound",
    "gemm_gflops",
    "numpy_step_colmajor_vs_rowmajor",
    "torch_step_colmajor_vs_rowmajor",
}


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    """500 training, 5000 validation and 100 test images: the trainers' default split."""
    root = tmp_path_factory.mktemp("bench") / "data"
    write_fake_cifar(root, n_per_batch=N_PER_BATCH, seed=0, n_test=N_TEST)
    return os.fspath(root)


def test_every_key_is_a_finite_number_and_the_table_prints(fake_dir, tmp_path, capsys, monkeypatch):
    quick = {"STEPS_PER_BLOCK": 2, "PAIRS_PER_REPEAT": 1, "LOADER_BATCHES": 2, "GEMM_SIZE": {"cpu": 256}}
    for name, value in quick.items():
        monkeypatch.setattr(benchmark, name, value)  # a quick run: these figures are not read
    out = tmp_path / "bench.json"
    benchmark.main(["--data_dir", fake_dir, "--json", os.fspath(out), "--repeats", "1", "--breakdown"])
    results = json.loads(out.read_text())
    assert REQUIRED_KEYS - {"study_vs_flop_bound"} <= results.keys()  # the study: the next test
    assert isinstance(results["device"], str) and results["device"].startswith("cpu")
    for key, value in results.items():
        if key != "device":
            assert isinstance(value, float) and math.isfinite(value) and value > 0, key
    assert isinstance(results["numpy_bn_step_vs_step"], float)  # the batch-norm speed line
    assert math.isfinite(results["numpy_bn_step_vs_step"])
    assert results["loader_speedup_vs_course_pipeline"] == min(
        results["loader_speedup_numpy"], results["loader_speedup_device"]
    )
    printed = capsys.readouterr().out
    for key in results:
        assert key in printed
    for part in ("NumPy step: SGD update", "PyTorch step: forward + loss", "peak RSS: imports + get_cifar10"):
        assert part in printed


def test_study_ratio_is_wall_time_over_flops_at_the_gemm_rate(fake_dir, tmp_path, monkeypatch):
    """The study itself is compare_batch_norm's to test; here its wall time is made up."""
    started = []

    def fake_run(args):
        started.append(args)
        return 30.0, 1e9

    monkeypatch.setattr(benchmark, "run_process", fake_run)
    monkeypatch.setattr(benchmark, "gemm_gflops", lambda device, repeats: 2.0)
    data = benchmark.cifar10_utils.get_cifar10(fake_dir)
    ratio, wall, flops, rate = benchmark.measure_study(
        fake_dir, data, torch.device("cpu"), 1, tmp_path, epochs=2
    )
    assert started[0][0] == "compare_batch_norm.py" and {"--fresh", "--device", "cpu"} <= set(started[0])
    assert started[0][started[0].index("--epochs") + 1] == "2"
    assert (wall, rate) == (30.0, 2.0)
    assert ratio == pytest.approx(30.0 / (flops / 2e9))


def test_markdown_rows_carry_value_target_and_verdict(capsys):
    results = {"device": "cpu: test", "numpy_step_vs_matmuls": 1.5, "loader_speedup_vs_course_pipeline": 25.0}
    benchmark.print_report(results, {"numpy_step_vs_matmuls": "parts"}, 3, [("a part", "1 ms", "10%")], True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Measured on cpu: test; --repeats 3."
    assert "| numpy_step_vs_matmuls | 1.5 | ≤ 1.25 | no | parts |" in lines
    assert "| loader_speedup_vs_course_pipeline | 25 | ≥ 20 | yes |  |" in lines
    assert "| a part | 1 ms | 10% |" in lines


def test_study_flops_count_every_product_by_hand():
    """One architecture [128], one seed, one epoch, 500/5000/100 images, batch 128: 3 steps."""
    splits = {
        name: type("Split", (), {"images": np.zeros((n, 1), np.uint8), "labels": np.zeros(n, np.int64)})()
        for name, n in (("train", 500), ("validation", 5000), ("test", 100))
    }
    settings = {"architectures": [[128]], "epochs": 1, "batch_size": 128, "seeds": [42], "lrs": [0.1]}
    forward = 2 * (3072 * 128 + 128 * 10)  # per sample: X W1^T and H W2^T
    train = 2 * forward + 2 * 128 * 10  # + dW of both layers + dX of the second only
    expected = 2 * (3 * 128 * train + 5000 * forward + 100 * forward)  # with and without batch norm
    assert benchmark.study_flops(splits, settings) == expected
    settings.update(seeds=[42, 43], lrs=[0.1, 0.3, 1.0])
    assert benchmark.study_flops(splits, settings) == 6 * expected


def test_layouts_hold_the_same_values():
    c, f = benchmark.numpy_model("C"), benchmark.numpy_model("F")
    for lin_c, lin_f in zip(c.linears, f.linears, strict=True):
        assert lin_c.params["weight"].flags.c_contiguous and lin_f.params["weight"].flags.f_contiguous
        assert not lin_f.params["weight"].flags.c_contiguous
        np.testing.assert_array_equal(lin_c.params["weight"], lin_f.params["weight"])
    cpu = torch.device("cpu")
    c, f = benchmark.torch_model(cpu, "C"), benchmark.torch_model(cpu, "F")
    for lin_c, lin_f in zip(c.linears(), f.linears(), strict=True):
        assert lin_c.weight.is_contiguous() and lin_f.weight.t().is_contiguous()
        assert not lin_f.weight.is_contiguous()
        assert torch.equal(lin_c.weight, lin_f.weight)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal where there is no CUDA")
def test_cuda_without_cuda_is_one_line_and_exit_2(fake_dir):
    result = subprocess.run(
        [sys.executable, "tools/benchmark.py", "--data_dir", fake_dir, "--device", "cuda"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "CUDA" in result.stderr


def test_the_batch_norm_step_trains_batch_norm_through_the_trainers_update():
    """The numerator of numpy_bn_step_vs_step is a real batch-norm training step: the model
    has a BatchNormModule in training mode, and one step moves its gamma, beta and running mean."""
    from modules import BatchNormModule

    rng = np.random.default_rng(0)
    batches = [
        (rng.standard_normal((benchmark.BATCH, 3072), dtype=np.float32), rng.integers(0, 10, benchmark.BATCH))
    ]
    model = benchmark.numpy_model("C", use_batch_norm=True)
    norms = [layer for layer in model.layers if isinstance(layer, BatchNormModule)]
    assert len(norms) == len(benchmark.HIDDEN) and all(bn.training for bn in norms)
    before = {name: norms[0].params[name].copy() for name in ("weight", "bias")}
    mean_before = norms[0].running_mean.copy()
    benchmark.numpy_step(model, batches)()
    for name, value in before.items():
        assert not np.array_equal(norms[0].params[name], value), name
    assert not np.array_equal(norms[0].running_mean, mean_before)
    assert not any(isinstance(layer, BatchNormModule) for layer in benchmark.numpy_model("C").layers)


@pytest.mark.parametrize("make_bad", ["directory", "file_as_parent", "empty"])
def test_unwritable_json_path_is_refused_before_measuring(fake_dir, tmp_path, monkeypatch, make_bad):
    if make_bad == "directory":  # a directory standing where the file would go
        path = tmp_path / "bench.json"
        path.mkdir()
    elif make_bad == "file_as_parent":
        (tmp_path / "a_file").write_text("x")
        path = tmp_path / "a_file" / "bench.json"
    else:
        path = ""

    def measured(*args, **kwargs):
        raise AssertionError("measured before the --json path was checked")

    monkeypatch.setattr(benchmark, "run_all", measured)
    with pytest.raises(ValueError, match="--json"):
        benchmark.main(["--data_dir", fake_dir, "--json", os.fspath(path)])


def test_json_is_written_whole_in_a_directory_made_for_it(fake_dir, tmp_path, monkeypatch):
    """Written atomically (support.output.write_json): no temporary file is left beside it."""
    monkeypatch.setattr(benchmark, "run_all", lambda *args: ({"device": "cpu: test", "gemm_gflops": 1.5}, {}))
    out = tmp_path / "new" / "bench.json"
    benchmark.main(["--data_dir", fake_dir, "--json", os.fspath(out)])
    assert json.loads(out.read_text()) == {"device": "cpu: test", "gemm_gflops": 1.5}
    assert os.listdir(out.parent) == ["bench.json"]


def test_bad_json_path_is_one_line_and_exit_2(fake_dir, tmp_path):
    (tmp_path / "bench.json").mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "tools/benchmark.py",
            "--data_dir",
            fake_dir,
            "--json",
            os.fspath(tmp_path / "bench.json"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--json" in result.stderr and "directory stands there" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
