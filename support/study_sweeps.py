"""The studies that sweep one setting (batch size, initial weight scale) across normalisations:
paired differences against the unnormalised arm, a table and a figure, from the runs alone.

For a seed, every arm at one swept value starts from the same Linear weights (torch.manual_seed)
and sees the same batches, so "batch norm − none" and "layer norm − none" are paired differences.
"""

import numpy as np

from support.plots import new_figure
from support.study_stats import finished, mean_ci

# study -> (the run field it sweeps, the axis label)
SWEEPS = {
    "batch_size": ("batch_size", "batch size (log scale; lr = 0.1 × batch size / 128)"),
    "init_scale": ("init_scale", "initial weight std as a multiple of Kaiming's (log scale)"),
}
COLORS = {"none": "tab:blue", "batch": "tab:orange", "layer": "tab:green"}
LABELS = {"none": "no normalization", "batch": "batch norm", "layer": "layer norm"}


def _values(settings):
    field = SWEEPS[settings["study"]][0]
    return field, settings[field + "s"]


def _arms(runs, settings):
    """{(swept value, norm): {seed: run}} for the study's runs."""
    field, _ = _values(settings)
    arms = {}
    for run in runs:
        arms.setdefault((run[field], run["norm"]), {})[run["seed"]] = run
    return arms


def sweep_rows(runs, settings):
    """One row per swept value and norm: test accuracies of the finished runs, the seeds that
    diverged, and (for a normalised arm) the paired differences to "none" with their 95 % CI."""
    _, values = _values(settings)
    arms = _arms(runs, settings)
    rows = []
    for value in values:
        for norm in settings["norms"]:
            arm, base = arms.get((value, norm), {}), arms.get((value, "none"), {})
            row = {"value": value, "norm": norm, "accuracies": [], "diverged": [], "diffs": [], "seeds": []}
            for seed in settings["seeds"]:
                run = arm.get(seed)
                if run is None:
                    continue
                if not finished(run):
                    row["diverged"].append(seed)
                    continue
                row["accuracies"].append(run["test_accuracy"])
                if norm != "none" and seed in base and finished(base[seed]):
                    row["diffs"].append(run["test_accuracy"] - base[seed]["test_accuracy"])
                    row["seeds"].append(seed)
            row["mean"], row["sd"] = (
                (float(np.mean(row["accuracies"])), float(np.std(row["accuracies"], ddof=1)))
                if len(row["accuracies"]) > 1
                else (float(np.mean(row["accuracies"])) if row["accuracies"] else None, None)
            )
            row["diff"], row["half"] = mean_ci(row["diffs"]) if row["diffs"] else (None, None)
            rows.append(row)
    return rows


def _fmt(value, signed=False):
    return "—" if value is None else f"{value:+.4f}" if signed else f"{value:.4f}"


def sweep_table(results, made_by):
    """The study's table (Markdown): per swept value and norm, test accuracy mean ± sd over the
    finished seeds, diverged seeds, and the paired difference to no normalisation with its CI."""
    settings = results["settings"]
    from support.study_store import study_runs

    field, _ = _values(settings)
    lines = [
        made_by + "Test accuracy of each run's best epoch (by validation accuracy; batch norm evaluated "
        "with its running statistics). Mean ± sd over the finished seeds; − none: the paired "
        "difference to the run without normalisation of the same seed (same initial weights and "
        "batches), its mean and 95 % t-interval over the seeds whose two runs both finished. "
        + (
            "The learning rate is scaled linearly with the batch size, 0.1 at batch 128, and every run "
            "sees the same number of images (the same epochs).\n"
            if field == "batch_size"
            else "The initial std of every Linear's weights is init_scale times Kaiming's.\n"
        ),
        f"| {field} | normalisation | test accuracy | diverged | − none | 95 % CI |",
        "| ---: | --- | --- | --- | ---: | --- |",
    ]
    for r in sweep_rows(study_runs(results), settings):
        accuracy = "—" if r["mean"] is None else _fmt(r["mean"]) + (f" ± {r['sd']:.4f}" if r["sd"] else "")
        accuracy += f" ({len(r['accuracies'])})" if r["accuracies"] else ""
        diverged = ", ".join(map(str, r["diverged"])) or ""
        ci = (
            "—"
            if r["half"] is None
            else f"[{_fmt(r['diff'] - r['half'], True)}, {_fmt(r['diff'] + r['half'], True)}]"
        )
        diff, ci = ("", "") if r["norm"] == "none" else (_fmt(r["diff"], True), ci)
        lines.append(f"| {r['value']:g} | {r['norm']} | {accuracy} | {diverged} | {diff} | {ci} |")
    return "\n".join(lines) + "\n"


def sweep_figure(runs, settings):
    """Test accuracy against the swept value, mean and min-max band over seeds per normalisation;
    diverged runs as crosses in a labelled strip below the data. Right: the paired differences to
    no normalisation with their 95 % intervals."""
    field, xlabel = SWEEPS[settings["study"]]
    rows = sweep_rows(runs, settings)
    fig = new_figure(figsize=(12, 5))
    ax, ax_diff = fig.subplots(1, 2)
    values = np.array(_values(settings)[1], dtype=float)
    for i, norm in enumerate(settings["norms"]):
        mine = [r for r in rows if r["norm"] == norm]
        mean = [np.nan if r["mean"] is None else r["mean"] for r in mine]
        low = [min(r["accuracies"], default=np.nan) for r in mine]
        high = [max(r["accuracies"], default=np.nan) for r in mine]
        ax.plot(values, mean, "o-", color=COLORS[norm], label=LABELS[norm])
        ax.fill_between(values, low, high, color=COLORS[norm], alpha=0.2, lw=0)
        for r in mine:  # a cross per diverged arm, with how many of its seeds diverged
            if r["diverged"]:
                at, strip_x = (r["value"], 0.03 + 0.04 * i), ax.get_xaxis_transform()
                ax.plot(*at, "x", color=COLORS[norm], ms=8, mew=2, transform=strip_x)
                n = len(r["diverged"])
                ax.annotate(f"{n} of {n + len(r['accuracies'])}", at, xycoords=strip_x, xytext=(6, -3),
                            textcoords="offset points", color=COLORS[norm], fontsize=8)  # fmt: skip
        if norm != "none":
            ok = [r for r in mine if r["half"] is not None]
            x, y, yerr = ([r[k] for r in ok] for k in ("value", "diff", "half"))
            x = np.array(x) * 1.04 ** (i - 1.5)  # the arms side by side at each value, not on top
            ax_diff.errorbar(
                x, y, yerr=yerr, fmt="o-", color=COLORS[norm], capsize=3, label=f"{norm} norm − none"
            )
    bottom, top = ax.get_ylim()
    strip = 0.02 + 0.04 * len(settings["norms"])
    if any(r["diverged"] for r in rows):
        ax.set_ylim(bottom - strip * (top - bottom) / (1 - strip), top)
        ax.axhspan(ax.get_ylim()[0], bottom, color="0.92", zorder=0)
        ax.text(
            0.01,
            strip / 2,
            "diverged (×: how many seeds; no accuracy)",
            transform=ax.transAxes,
            va="center",
            color="0.35",
        )
    seeds = ", ".join(map(str, settings["seeds"]))
    title = (
        f"{settings['architectures'][0]}, {settings['epochs']} epochs: mean, band min-max over seeds {seeds}"
    )
    ax.set(xscale="log", xlabel=xlabel, ylabel="test accuracy (best epoch)", title=title)
    ax_diff.axhline(0, color="k", lw=0.8)
    ax_diff.set(xscale="log", xlabel=xlabel, ylabel="paired difference in test accuracy",
                title="normalised − none, same seed: mean and 95 % t-interval")  # fmt: skip
    for a in (ax, ax_diff):
        a.set_xticks(values, [f"{v:g}" for v in values])
        a.minorticks_off()
        a.grid(alpha=0.3)
        a.legend(fontsize=9)
    fig.tight_layout()
    return fig
