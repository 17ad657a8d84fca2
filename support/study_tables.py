"""The study's Markdown tables, each starting with the command that made it."""

import os

import numpy as np

from support.study_config import DEFAULT_RESULTS, STUDIES, planned_runs
from support.study_stats import finished, groups, paired_differences
from support.study_store import study_runs


def command_line(settings, results_filename):
    """The command that trains (or resumes, or redraws) this study into results_filename."""
    study = settings["study"]
    defaults = STUDIES[study]
    words = ["python", "compare_batch_norm.py"]
    if study != "default":
        words += ["--study", study]
    for name, flag in (("seeds", "--seeds"), ("lrs", "--lrs")):
        if settings[name] != defaults[name]:
            words += [flag, *(f"{v:g}" if isinstance(v, float) else str(v) for v in settings[name])]
    if settings["epochs"] != defaults["epochs"]:
        words += ["--epochs", str(settings["epochs"])]
    if _one_architecture(settings):
        words += ["--hidden_dims", *map(str, settings["architectures"][0])]
    path = os.path.relpath(os.path.abspath(results_filename))
    if path.startswith(os.pardir):
        path = os.path.abspath(results_filename)
    if path != DEFAULT_RESULTS[study]:
        words += ["--results", path]
    return " ".join(words)


def _one_architecture(settings):
    """Whether --hidden_dims gives the study's architectures: one, not the study's own."""
    architectures = settings["architectures"]
    return len(architectures) == 1 and architectures != STUDIES[settings["study"]]["architectures"]


def made_by(results, results_filename):
    """The first lines of every table: the command that made it, and how complete the study is."""
    settings = results["settings"]
    runs = study_runs(results)
    n_planned = len(planned_runs(settings))
    line = f"Made by `{command_line(settings, results_filename)}`"
    offered = {"study", "seeds", "lrs", "epochs", *(["architectures"] if _one_architecture(settings) else [])}
    others = {k: v for k, v in settings.items() if k not in offered and v != STUDIES[settings["study"]][k]}
    if others:  # settings the command line does not offer (the tests' tiny studies)
        line += " with `train_models(" + ", ".join(f"{k}={v!r}" for k, v in others.items()) + ")`"
    if len(runs) < n_planned:
        line += f" ({len(runs)} of its {n_planned} runs finished so far)"
    devices = ", ".join(sorted({run.get("device", "?") for run in runs}))
    return (
        f"{line}: {settings['epochs']} epoch{'s' if settings['epochs'] > 1 else ''}, batch size "
        f"{settings.get('batch_size', 'swept')}, seeds {', '.join(map(str, settings['seeds']))}; "
        f"trained on {devices}.\n\n"
    )


def _fmt(value, signed=False):
    return "—" if value is None or not np.isfinite(value) else f"{value:+.4f}" if signed else f"{value:.4f}"


def _ci_cell(mean, half):
    return "—" if half is None else f"[{_fmt(mean - half, True)}, {_fmt(mean + half, True)}]"


def _seeds(seeds):
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def paired_table(results, results_filename):
    """paired_differences.md: per configuration and pooled, with the command at the top."""
    settings = results["settings"]
    rows, pooled = paired_differences(study_runs(results), settings)
    lines = [
        made_by(results, results_filename)
        + "Test accuracy of each run's best epoch (by validation accuracy). Without / with BN: the "
        "mean over that arm's finished runs. BN − no BN: the mean over the seeds whose two arms both "
        "finished of the paired difference (for a seed both arms start from the same Linear weights "
        "and see the same batches), and its 95 % CI: mean ± t(0.975, n − 1) · s / √n over the n "
        "pairs, s the sample standard deviation of the differences; none for n = 1. A diverged arm "
        "(loss not finite) has no number and its pair is left out.\n",
        "| hidden layers | lr | pairs | without BN | with BN | BN − no BN | 95 % CI | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        notes = [f"{arm} diverged ({_seeds(s)})" for arm, s in r["diverged"].items() if s]
        if r["missing"]:
            notes.append(f"not trained yet ({_seeds(r['missing'])})")
        cells = []
        for bn, name in ((False, "no BN"), (True, "BN")):
            values, n_diverged = r["arms"][bn], len(r["diverged"][name])
            if not values:
                cells.append("diverged" if n_diverged else "—")
            else:
                partial = f" ({len(values)} of {len(values) + n_diverged} runs)" if n_diverged else ""
                cells.append(_fmt(np.mean(values)) + partial)
        lines.append(
            f"| {list(r['dims'])} | {r['lr']:g} | {len(r['diffs'])} | {cells[0]} | {cells[1]} | "
            f"{_fmt(r['mean'], True)} | {_ci_cell(r['mean'], r['half'])} | {'; '.join(notes)} |"
        )
    p = pooled
    lines.append(
        f"| pooled | all | {len(p['per_seed'])} seeds | | | {_fmt(p['mean'], True)} | "
        f"{_ci_cell(p['mean'], p['half'])} | |"
    )
    excluded = ", ".join(f"{list(r['dims'])} at lr {r['lr']:g}" for r in p["excluded"]) or "none"
    lines.append(
        f"\nPooled: for each seed, the mean of its differences over the {p['configurations']} "
        f"configurations where every seed has both arms finished; then the mean and 95 % CI of "
        f"those {len(p['per_seed'])} per-seed means (df = {max(len(p['per_seed']) - 1, 0)}), so that "
        f"configurations sharing a seed do not count as independent. "
        f"Left out ({len(p['excluded'])}, a diverged or untrained arm): {excluded}.\n"
    )
    return "\n".join(lines)


def accuracy_table(results, results_filename):
    """test_accuracy.md of the default study: one row per architecture x batch norm (at each lr)."""
    settings = results["settings"]
    lines = [
        made_by(results, results_filename)
        + "Mean ± sample standard deviation over seeds (none for one seed); test accuracy of each "
        "run's best epoch by validation accuracy.\n",
        "| hidden layers | batch norm | lr | seeds | test accuracy | best val. accuracy | "
        "last-epoch train accuracy | diverged | wall time per run (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (dims, lr, bn), runs in groups(study_runs(results), settings).items():
        ok = [r for r in runs if finished(r)]
        test = [r["test_accuracy"] for r in ok]
        spread = f" ± {np.std(test, ddof=1):.4f}" if len(test) > 1 else ""
        lines.append(
            f"| {list(dims)} | {'yes' if bn else 'no'} | {lr:g} | {len(runs)} | "
            f"{_fmt(np.mean(test)) if test else '—'}{spread} | "
            f"{_fmt(np.mean([max(r['val_accuracy']) for r in ok])) if ok else '—'} | "
            f"{_fmt(np.mean([r['train_accuracy'][-1] for r in ok])) if ok else '—'} | "
            f"{len(runs) - len(ok)} | {np.mean([r['wall_time'] for r in runs]):.1f} |"
        )
    return "\n".join(lines) + "\n"


def sweep_table(results, results_filename):
    """lr_sweep.md of the extended study: one row per architecture x batch norm x lr."""
    settings = results["settings"]
    lines = [
        made_by(results, results_filename)
        + "Over the seeds whose run did not diverge: last-epoch training accuracy (mean over the "
        "epoch's batches) and validation accuracy (mean, and min to max over seeds), their gap, "
        "and the test accuracy of each run's best epoch (mean ± sample standard deviation).\n",
        "| hidden layers | batch norm | lr | seeds | diverged | last train acc. | last val. acc. "
        "(min–max) | train − val | test accuracy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (dims, lr, bn), runs in groups(study_runs(results), settings).items():
        ok = [r for r in runs if finished(r)]
        if ok:
            train = np.mean([r["train_accuracy"][-1] for r in ok])
            val = np.array([r["val_accuracy"][-1] for r in ok])
            test = [r["test_accuracy"] for r in ok]
            spread = f" ± {np.std(test, ddof=1):.4f}" if len(test) > 1 else ""
            cells = (
                f"{train:.4f} | {val.mean():.4f} ({val.min():.4f}–{val.max():.4f}) | "
                f"{train - val.mean():+.4f} | {np.mean(test):.4f}{spread}"
            )
        else:
            cells = "— | — | — | —"
        lines.append(
            f"| {list(dims)} | {'yes' if bn else 'no'} | {lr:g} | {len(runs)} | "
            f"{len(runs) - len(ok)} | {cells} |"
        )
    return "\n".join(lines) + "\n"
