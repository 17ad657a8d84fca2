"""The statistics of a study: paired BN - no BN differences and their 95 % t confidence intervals."""

import math

import numpy as np

# t(0.975, df) of Student's t distribution for df = 1..30, the two-sided 95 % quantile, to four
# decimals (any statistics table; the tests check each against an integral of the t density).
T975 = (
    *(12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281),
    *(2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860),
    *(2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423),
)


def t_quantile_975(df):
    """t(0.975, df): the table up to df 30, beyond it the Cornish-Fisher expansion in 1/df
    around the normal quantile (error below 2e-4 there). scipy is not a dependency."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values):
    """(mean, half-width of the 95 % t confidence interval of the mean); half-width None for n < 2."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), None
    half = t_quantile_975(len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def finished(run):
    return not run["diverged"] and run["test_accuracy"] is not None


def paired_differences(runs, settings):
    """Per configuration (architecture x lr): the paired BN - no BN test-accuracy differences.

    Returns (rows, pooled). Each row: dims, lr; arms {False: [...], True: [...]}, the test
    accuracies of each arm's finished runs; diffs, seeds (the pairs with both arms finished),
    mean, half (half-width of the 95 % CI); diverged {"no BN": [seeds], "BN": [seeds]};
    missing (seeds with an arm not trained yet). pooled: for each seed, the mean difference
    over the configurations where every seed has both arms finished; then the mean and CI of
    those per-seed means; pooled["excluded"] lists the rows left out.
    """
    by_key = {(tuple(r["hidden_dims"]), r["lr"], r["use_batch_norm"], r["seed"]): r for r in runs}
    rows = []
    for dims in map(tuple, settings["architectures"]):
        for lr in settings["lrs"]:
            row = {"dims": dims, "lr": lr, "arms": {False: [], True: []}, "diffs": [], "seeds": []}
            row["diverged"], row["missing"] = {"no BN": [], "BN": []}, []
            for seed in settings["seeds"]:
                arms = [by_key.get((dims, lr, bn, seed)) for bn in (False, True)]
                if None in arms:
                    row["missing"].append(seed)
                for bn, arm in enumerate(arms):
                    if arm is not None and finished(arm):
                        row["arms"][bool(bn)].append(arm["test_accuracy"])
                    elif arm is not None:
                        row["diverged"]["BN" if bn else "no BN"].append(seed)
                if all(arm is not None and finished(arm) for arm in arms):
                    row["diffs"].append(arms[1]["test_accuracy"] - arms[0]["test_accuracy"])
                    row["seeds"].append(seed)
            row["mean"], row["half"] = mean_ci(row["diffs"]) if row["diffs"] else (None, None)
            rows.append(row)
    complete = [r for r in rows if len(r["seeds"]) == len(settings["seeds"])]
    per_seed = np.array([r["diffs"] for r in complete]).mean(axis=0) if complete else np.array([])
    pooled = {
        "configurations": len(complete),
        "excluded": [r for r in rows if len(r["seeds"]) != len(settings["seeds"])],
        "per_seed": per_seed.tolist(),
    }
    pooled["mean"], pooled["half"] = mean_ci(per_seed) if len(per_seed) else (None, None)
    return rows, pooled


def groups(runs, settings):
    """{(architecture, lr, batch norm): [runs over seeds]} in the study's order, empty ones left out."""
    groups = {}
    for dims in map(tuple, settings["architectures"]):
        for lr in settings["lrs"]:
            for bn in (False, True):
                found = [
                    r
                    for r in runs
                    if (tuple(r["hidden_dims"]), r["lr"], r["use_batch_norm"]) == (dims, lr, bn)
                ]
                if found:
                    groups[dims, lr, bn] = found
    return groups
