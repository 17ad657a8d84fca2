"""support/study_stats.py: Student's t quantiles, confidence intervals, and the paired BN - no BN
differences the study's tables report, each checked against a computation by hand."""

import math

import numpy as np
import pytest

from support import study_stats


def t_cdf(t, df):
    """P(T <= t) for Student's t with df degrees of freedom, by integrating its density."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    x = np.linspace(0, t, 200_001)
    density = c * (1 + x**2 / df) ** (-(df + 1) / 2)
    return 0.5 + float(np.sum((density[1:] + density[:-1]) / 2 * np.diff(x)))


@pytest.mark.parametrize("df", [*range(1, 31), 31, 45, 100, 1000])
def test_t_quantiles(df):
    assert t_cdf(study_stats.t_quantile_975(df), df) == pytest.approx(0.975, abs=2e-5)


def test_mean_ci():
    mean, half = study_stats.mean_ci([0.01, 0.02, 0.03])
    assert mean == pytest.approx(0.02) and half == pytest.approx(4.3027 * 0.01 / math.sqrt(3))
    assert study_stats.mean_ci([0.5]) == (0.5, None)


def make_run(dims, bn, lr, seed, test, diverged=False):
    return {
        "hidden_dims": list(dims),
        "use_batch_norm": bn,
        "lr": lr,
        "seed": seed,
        "test_accuracy": None if diverged else test,
        "diverged": diverged,
    }


def test_paired_differences_by_hand():
    settings = {"architectures": [[8], [16]], "lrs": [0.1, 1.0], "seeds": [1, 2, 3]}
    diffs = {1: 0.01, 2: 0.03, 3: 0.02}
    runs = []
    for seed, d in diffs.items():
        runs += [
            make_run([8], False, 0.1, seed, 0.40 + seed / 100),
            make_run([8], True, 0.1, seed, 0.40 + seed / 100 + d),
        ]
        runs += [make_run([16], False, 0.1, seed, 0.5), make_run([16], True, 0.1, seed, 0.5 - d)]
        runs += [
            make_run([8], False, 1.0, seed, 0.3, diverged=seed == 2),
            make_run([8], True, 1.0, seed, 0.35),
        ]
    runs += [make_run([16], False, 1.0, 1, 0.3)]  # its pair not trained yet
    rows, pooled = study_stats.paired_differences(runs, settings)
    by = {(r["dims"], r["lr"]): r for r in rows}
    r = by[(8,), 0.1]
    assert r["diffs"] == pytest.approx([0.01, 0.03, 0.02]) and r["mean"] == pytest.approx(0.02)
    assert r["half"] == pytest.approx(4.3027 * 0.01 / math.sqrt(3))
    assert by[(16,), 0.1]["mean"] == pytest.approx(-0.02)
    r = by[(8,), 1.0]
    assert r["seeds"] == [1, 3] and r["diverged"] == {"no BN": [2], "BN": []}
    assert r["mean"] == pytest.approx(0.05) and r["half"] == pytest.approx(12.7062 * 0.0 / math.sqrt(2))
    assert by[(16,), 1.0]["missing"] == [1, 2, 3] and by[(16,), 1.0]["mean"] is None
    # pooled over the two complete configurations: per seed (d - d) / 2 = 0
    assert pooled["configurations"] == 2 and len(pooled["excluded"]) == 2
    assert pooled["per_seed"] == pytest.approx([0, 0, 0]) and pooled["mean"] == pytest.approx(0)
