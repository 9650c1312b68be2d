"""The CaSpeR experiment (``python run.py +experiment=casper``): ER vs ER + CaSpeR on a
class-incremental split of an image dataset (Fashion-MNIST: 5 tasks x 2 classes), over seeds.

``run(cfg) -> dict`` trains every (method, seed) run, evaluates after each task on the test items
of all tasks seen so far, and writes into ``cfg.paths.output_dir``:

- ``results.csv``: one row per (method, seed, task just trained): accuracy on each seen task and
  their average;
- ``summary.csv``: per method, mean and std over seeds of the final average accuracy and the
  forgetting, and of the buffer spectrum's eigengap (lambda_C - lambda_{C-1}, C classes) and low-eigenvalue sum; ``metrics.json``: the same plus the paired
  comparison of the two methods and a verdict;
- ``spectra.csv``, ``laplacian_spectrum.png``: the smallest eigenvalues of the normalised
  Laplacian of the whole final buffer's features (kNN graph, the paper's diagnostic);
- ``per_task_accuracy.png``; a console table; and everything to the experiment logger.

Runs are plain ``Lightning`` fits, one Trainer per task (about 1 s of overhead per task against
roughly 10 s of training), on ``cfg.threads`` intra-op threads (set by ``pipeline.main``).
For a given seed both methods see the same initial weights, the same stream order and the same
replay draws until their weights differ: CaSpeR's balanced batches use a generator of their own,
so the comparison is paired.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from latentstitch.continual.buffer import ReservoirBuffer
from latentstitch.continual.er import (
    ERModule,
    SmallCNN,
    Task,
    average_accuracy,
    class_incremental_split,
    evaluate,
    forgetting,
    make_tasks,
    task_loader,
)
from latentstitch.continual.regularizer import CasperCallback, CasperRegularizer
from latentstitch.continual.spectral import CONVENTIONS, laplacian_eigenvalues
from latentstitch.data import load_dataset
from latentstitch.data.datasets import normalise_images
from latentstitch.data.items import stratified_subset
from latentstitch.encoders.training import quiet_lightning
from latentstitch.errors import ConfigError
from latentstitch.experiments.outputs import RunOutputs

log = logging.getLogger(__name__)

METHODS = ("er", "er_casper")
LABELS = {"er": "ER", "er_casper": "ER + CaSpeR"}
SPECTRUM_SHOWN = 30  # smallest eigenvalues kept in spectra.csv and the plot


# ----------------------------------------------------------------------------- settings


def settings(cfg: DictConfig) -> dict[str, Any]:
    """The ``casper`` block, checked; one clear line for each bad value."""
    if "casper" not in cfg:
        raise ConfigError("task=casper needs a casper block: use +experiment=casper")
    c = OmegaConf.to_container(cfg.casper, resolve=True)
    methods = [str(m) for m in c.get("methods", METHODS)]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"casper.methods={methods}: each must be one of {list(METHODS)}")
    seeds = c.get("seeds", [0])
    seeds = [int(s) for s in (seeds if isinstance(seeds, list) else [seeds])]
    if not seeds:
        raise ConfigError("casper.seeds is empty")
    num_classes = int(cfg.dataset.get("num_classes") or 0)
    tasks, cpt = int(c.get("tasks", 5)), int(c.get("classes_per_task", 2))
    if tasks < 1 or cpt < 1 or (num_classes and tasks * cpt > num_classes):
        raise ConfigError(
            f"casper.tasks={tasks} x casper.classes_per_task={cpt} must be positive and fit in the dataset's {num_classes} classes"
        )
    positive = {"buffer": 1, "epochs_per_task": 1, "batch_size": 1, "replay_batch_size": 0, "k": 1, "m": 1}
    for key, low in positive.items():
        if int(c[key]) < low:
            raise ConfigError(f"casper.{key}={c[key]} must be at least {low}")
    if float(c["rho"]) < 0 or float(c["lr"]) <= 0 or float(c.get("temperature", 1.0)) <= 0:
        raise ConfigError(f"casper: rho={c['rho']} must be >= 0, lr={c['lr']} and temperature={c.get('temperature')} > 0")
    if c.get("convention", "code") not in CONVENTIONS:
        raise ConfigError(f"casper.convention={c.get('convention')!r} is not one of {list(CONVENTIONS)}")
    p = int(c.get("p") or cpt)
    if p * int(c["m"]) < p + 2:
        raise ConfigError(f"casper.m={c['m']}: a balanced batch of {p} classes x m samples needs at least {p + 2} samples")
    for key in ("subset", "test_subset"):
        if c.get(key) is not None and int(c[key]) < 1:
            raise ConfigError(f"casper.{key}={c[key]} must be at least 1 (or null for all)")
    return {**c, "methods": methods, "seeds": seeds, "tasks": tasks, "classes_per_task": cpt, "p": p}


# ----------------------------------------------------------------------------- data


def load_data(
    cfg: DictConfig, s: dict[str, Any]
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], list[Task]]:
    """Normalised train and test tensors (the official train split, whole or a stratified subset)
    and the class-incremental tasks over them."""
    items = load_dataset(cfg.dataset, cfg.paths.data_dir)
    if items.labels is None or "image" not in items.views:
        raise ConfigError(f"dataset {items.name}: the casper experiment needs labelled images")
    seed = int(cfg.dataset.get("split_seed", 0))
    parts = []
    for split, limit in (("train", s.get("subset")), ("test", s.get("test_subset"))):
        ids = items.ids(split) if split == "test" else torch.cat([items.ids("train"), items.ids("val")]).sort().values
        ids = stratified_subset(ids, items.labels[ids], None if limit is None else int(limit), seed)
        images = normalise_images(items.views["image"][ids], list(cfg.dataset.mean), list(cfg.dataset.std))
        parts.append((images, items.labels[ids].long()))
    task_classes = class_incremental_split(s["tasks"], s["classes_per_task"], s.get("class_order"))
    tasks = make_tasks(parts[0][1], parts[1][1], task_classes)
    empty = [t.classes for t in tasks if len(t.train) == 0 or len(t.test) == 0]
    if empty:
        raise ConfigError(f"tasks with classes {empty} have no train or test items (casper.subset too small?)")
    log.info("casper: %s, %d train / %d test images, tasks %s", items.name, len(parts[0][1]), len(parts[1][1]), task_classes)
    return parts[0], parts[1], tasks


# ----------------------------------------------------------------------------- one run


def _trainer(cfg: DictConfig, s: dict[str, Any], callbacks: list[L.Callback]) -> L.Trainer:
    accelerator = str(cfg.get("trainer", {}).get("accelerator", "cpu"))
    return L.Trainer(
        accelerator=accelerator, devices=1, max_epochs=int(s["epochs_per_task"]), logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=bool(s.get("progress_bar", False)),
        callbacks=callbacks, num_sanity_val_steps=0, deterministic=False,
    )  # fmt: skip


def train_run(
    cfg: DictConfig, s: dict[str, Any], method: str, seed: int, train, test, tasks: list[Task], channels: int, image_size: int
) -> dict[str, Any]:
    """One (method, seed) run: accuracy matrix, final average accuracy, forgetting, buffer spectrum."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    net = SmallCNN(channels, int(cfg.dataset.num_classes), image_size, int(s.get("width", 16)), int(s.get("hidden", 128)))
    buffer = ReservoirBuffer(int(s["buffer"]), torch.Generator().manual_seed(seed))
    module = ERModule(net, buffer, float(s["lr"]), int(s["replay_batch_size"]), replay_seed=seed + 1)
    reg = None
    callbacks: list[L.Callback] = []
    if method == "er_casper":
        reg = CasperRegularizer(
            num_classes_per_task=s["p"], samples_per_class=int(s["m"]), k=int(s["k"]), rho=float(s["rho"]),
            temperature=float(s.get("temperature", 1.0)), convention=str(s.get("convention", "code")),
            generator=torch.Generator().manual_seed(seed + 2),
        )  # fmt: skip
        callbacks.append(CasperCallback(reg))
    matrix: list[list[float]] = []
    nonfinite_steps = 0
    task_losses: list[float] = []
    casper_means: list[float | None] = []
    for t, task in enumerate(tasks):
        module.current_task = t
        module.losses.clear()
        seen_casper = len(reg.history) if reg else 0
        loader = task_loader(train[0][task.train], train[1][task.train], int(s["batch_size"]), seed=seed * 1000 + t)
        _trainer(cfg, s, callbacks).fit(module, loader)
        net.to("cpu")
        matrix.append(evaluate(net, test[0], test[1], tasks, t + 1))
        task_losses.append(sum(module.losses) / max(1, len(module.losses)))
        nonfinite_steps += sum(not math.isfinite(v) for v in module.losses)
        new = reg.history[seen_casper:] if reg else []
        casper_means.append(sum(new) / len(new) if new else None)
        log.info(
            "[%s seed %d] task %d/%d %s: accuracy on seen tasks %s, average %.4f (%.0f s)",
            method, seed, t + 1, len(tasks), task.classes, " ".join(f"{a:.3f}" for a in matrix[-1]),
            average_accuracy(matrix[-1]), time.perf_counter() - start,
        )  # fmt: skip
    spectrum = buffer_spectrum(net, buffer, int(s["k"]))
    seen_classes = int(buffer.data()[1].unique().numel())
    diverged = nonfinite_steps > 0 or not spectrum
    if diverged:
        log.warning("[%s seed %d] diverged: %d steps with a non-finite loss, %d CaSpeR batches skipped", method, seed,
                    nonfinite_steps, reg.skipped if reg else 0)  # fmt: skip
    return {
        "method": method, "seed": seed, "matrix": matrix, "task_losses": task_losses, "casper_losses": casper_means,
        "final_avg_acc": average_accuracy(matrix[-1]), "forgetting": forgetting(matrix),
        "spectrum": spectrum, "buffer_classes": seen_classes,
        "eigengap": spectrum[seen_classes] - spectrum[seen_classes - 1] if len(spectrum) > seen_classes else math.nan,
        "low_eigensum": sum(spectrum[:seen_classes]) if spectrum else math.nan,
        "diverged": diverged, "nonfinite_steps": nonfinite_steps,
        "casper_calls": len(reg.history) if reg else 0, "casper_skipped": reg.skipped if reg else 0,
        "casper_ms_per_call": 1000 * reg.seconds / len(reg.history) if reg and reg.history else None,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


@torch.no_grad()
def buffer_spectrum(net: torch.nn.Module, buffer: ReservoirBuffer, k: int) -> list[float]:
    """Ascending eigenvalues of the normalised Laplacian of the whole buffer's features (kNN
    graph, the paper's diagnostic); empty where the network diverged (non-finite spectrum)."""
    net.eval()
    features = net.features(buffer.data()[0])
    try:
        spectrum = laplacian_eigenvalues(features, k) if torch.isfinite(features).all() else None
    except torch.linalg.LinAlgError:
        spectrum = None
    if spectrum is None or not torch.isfinite(spectrum).all():
        return []
    return spectrum.tolist()


# ----------------------------------------------------------------------------- summaries


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of the finite values; NaN if none."""
    values = [v for v in values if math.isfinite(v)]
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def summarise(runs: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        acc, acc_sd = mean_std([r["final_avg_acc"] for r in mine])
        fgt, fgt_sd = mean_std([r["forgetting"] for r in mine])
        gap, gap_sd = mean_std([r["eigengap"] for r in mine])
        low, low_sd = mean_std([r["low_eigensum"] for r in mine])
        secs, _ = mean_std([r["seconds"] for r in mine])
        ms = [r["casper_ms_per_call"] for r in mine if r["casper_ms_per_call"] is not None]
        rows.append({
            "method": method, "seeds": len(mine), "diverged_runs": sum(r["diverged"] for r in mine),
            "final_avg_acc_mean": acc, "final_avg_acc_std": acc_sd, "forgetting_mean": fgt, "forgetting_std": fgt_sd,
            "eigengap_mean": gap, "eigengap_std": gap_sd, "low_eigensum_mean": low, "low_eigensum_std": low_sd, "seconds_per_run": secs,
            "casper_ms_per_call": sum(ms) / len(ms) if ms else None,
        })  # fmt: skip
    return rows


def paired_comparison(runs: list[dict[str, Any]], alpha: float = 0.05) -> dict[str, Any] | None:
    """ER + CaSpeR minus ER on the same seeds: mean +- std of the difference in final average
    accuracy, a two-sided paired t-test, and a one-line verdict."""
    by = {(r["method"], r["seed"]): r for r in runs}
    seeds = sorted(s for m, s in by if m == "er" and ("er_casper", s) in by)
    if not seeds:
        return None
    diffs = [by["er_casper", s]["final_avg_acc"] - by["er", s]["final_avg_acc"] for s in seeds]
    fdiffs = [by["er_casper", s]["forgetting"] - by["er", s]["forgetting"] for s in seeds]
    mean, std = mean_std(diffs)
    p_value = None
    if len(seeds) > 1 and std > 0:
        from scipy import stats

        p_value = float(
            stats.ttest_rel(
                [by["er_casper", s]["final_avg_acc"] for s in seeds], [by["er", s]["final_avg_acc"] for s in seeds]
            ).pvalue
        )
    if p_value is not None and p_value < alpha:
        verdict = f"CaSpeR {'helps' if mean > 0 else 'hurts'}: {100 * mean:+.2f} points of final average accuracy (paired t-test p={p_value:.3g}, {len(seeds)} seeds)"
    else:
        shown = "n/a" if p_value is None else f"{p_value:.3g}"
        verdict = f"no significant difference: CaSpeR {100 * mean:+.2f} +- {100 * std:.2f} points of final average accuracy (paired t-test p={shown}, {len(seeds)} seeds)"
    return {
        "seeds": seeds,
        "acc_diff_mean": mean,
        "acc_diff_std": std,
        "forgetting_diff_mean": mean_std(fdiffs)[0],
        "p_value": p_value,
        "verdict": verdict,
    }


def format_table(summary: list[dict[str, Any]], comparison: dict[str, Any] | None) -> str:
    lines = [f"{'method':<14}{'seeds':>6}{'final avg acc':>20}{'forgetting':>20}{'eigengap':>18}{'s/run':>8}"]
    for r in summary:
        lines.append(
            f"{LABELS.get(r['method'], r['method']):<14}{r['seeds']:>6}"
            f"{100 * r['final_avg_acc_mean']:>12.2f} +- {100 * r['final_avg_acc_std']:<5.2f}"
            f"{100 * r['forgetting_mean']:>12.2f} +- {100 * r['forgetting_std']:<5.2f}"
            f"{r['eigengap_mean']:>10.3f} +- {r['eigengap_std']:<5.3f}{r['seconds_per_run']:>6.0f}"
        )  # fmt: skip
    diverged = [f"{r['method']}: {r['diverged_runs']}" for r in summary if r["diverged_runs"]]
    if diverged:
        lines.append(f"diverged runs (non-finite loss; counted in the accuracy, left out of the spectrum): {', '.join(diverged)}")
    if comparison:
        lines.append(comparison["verdict"])
    return "\n".join(lines)


# ----------------------------------------------------------------------------- files


def write_results_csv(path: Path, runs: list[dict[str, Any]], tasks: list[Task]) -> None:
    columns = [
        "method",
        "seed",
        "after_task",
        *(f"acc_task{j}" for j in range(len(tasks))),
        "avg_acc",
        "train_loss",
        "casper_loss",
        "diverged",
    ]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in runs:
            for t, row in enumerate(r["matrix"]):
                record = {"method": r["method"], "seed": r["seed"], "after_task": t, "avg_acc": round(average_accuracy(row), 6),
                          "train_loss": round(r["task_losses"][t], 6), "casper_loss": "" if r["casper_losses"][t] is None else round(r["casper_losses"][t], 6)}  # fmt: skip
                record.update({f"acc_task{j}": round(a, 6) for j, a in enumerate(row)}, diverged=r["diverged"])
                writer.writerow(record)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_per_task(path: Path, runs: list[dict[str, Any]], methods: list[str], tasks: list[Task]) -> Path:
    """One panel per method: accuracy on each task after each training stage (mean +- std over
    seeds), and the average over seen tasks in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(methods), figsize=(5.2 * len(methods), 4), sharey=True, squeeze=False)
    stages = list(range(1, len(tasks) + 1))
    for ax, method in zip(axes[0], methods):
        mine = [r for r in runs if r["method"] == method]
        for j, task in enumerate(tasks):
            xs = stages[j:]
            stats = [mean_std([r["matrix"][t][j] for r in mine]) for t in range(j, len(tasks))]
            m = [100 * a for a, _ in stats]
            sd = [100 * b for _, b in stats]
            ax.plot(xs, m, marker="o", ms=3, label=f"task {j + 1} {task.classes}")
            ax.fill_between(xs, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], alpha=0.15)
        avg = [mean_std([average_accuracy(r["matrix"][t]) for r in mine]) for t in range(len(tasks))]
        ax.plot(stages, [100 * a for a, _ in avg], color="black", lw=2, marker="s", ms=4, label="average (seen tasks)")
        ax.set_title(f"{LABELS.get(method, method)} ({len(mine)} seeds)")
        ax.set_xlabel("tasks trained")
        ax.set_xticks(stages)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("class-incremental test accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_spectrum(path: Path, runs: list[dict[str, Any]], methods: list[str], k: int) -> Path:
    """The smallest eigenvalues of the normalised Laplacian of the final buffer's kNN graph, mean
    +- std over seeds per method, with a line at the number of classes in the buffer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for method in methods:
        mine = [r for r in runs if r["method"] == method and r["spectrum"]]
        if not mine:
            continue
        n = min(SPECTRUM_SHOWN, *(len(r["spectrum"]) for r in mine))
        stats = [mean_std([r["spectrum"][i] for r in mine]) for i in range(n)]
        m = [a for a, _ in stats]
        label = f"{LABELS.get(method, method)} ({len(mine)} runs)"
        ax.errorbar(range(n), m, yerr=[b for _, b in stats], marker="o", ms=3, capsize=2, label=label)
    classes = max(r["buffer_classes"] for r in runs)
    ax.axvline(classes - 0.5, color="gray", ls="--", lw=1, label=f"{classes} classes in the buffer")
    ax.set_xlabel("eigenvalue index (0-based, ascending)")
    ax.set_ylabel("eigenvalue")
    ax.set_title(f"final buffer features: normalised Laplacian spectrum (kNN, k={k})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _log_curves(logger: Any, runs: list[dict[str, Any]]) -> None:
    """Per-task accuracies and losses of every run, one logger step per task trained."""
    if not logger:
        return
    step = 0
    for r in runs:
        for t, row in enumerate(r["matrix"]):
            metrics = {
                f"{r['method']}/seed{r['seed']}/avg_acc": average_accuracy(row),
                f"{r['method']}/seed{r['seed']}/train_loss": r["task_losses"][t],
            }
            metrics.update({f"{r['method']}/seed{r['seed']}/acc_task{j}": a for j, a in enumerate(row)})
            if r["casper_losses"][t] is not None:
                metrics[f"{r['method']}/seed{r['seed']}/casper_loss"] = r["casper_losses"][t]
            logger.log_metrics(metrics, step=step)
            step += 1


# ----------------------------------------------------------------------------- entry point


def run(cfg: DictConfig) -> dict[str, Any]:
    """ER vs ER + CaSpeR over ``casper.seeds``; see the module docstring for the outputs."""
    quiet_lightning()
    s = settings(cfg)
    out = RunOutputs(cfg)  # the run and cache dirs are writable, before any work
    output_dir = out.dir
    train, test, tasks = load_data(cfg, s)
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with out:
        channels, image_size = int(train[0].shape[1]), int(train[0].shape[-1])
        total = len(s["seeds"]) * len(s["methods"])
        for seed in s["seeds"]:
            for method in s["methods"]:
                log.info("casper: run %d/%d: %s, seed %d", len(runs) + 1, total, method, seed)
                runs.append(train_run(cfg, s, method, seed, train, test, tasks, channels, image_size))
        summary = summarise(runs, s["methods"])
        comparison = paired_comparison(runs)
        write_results_csv(output_dir / "results.csv", runs, tasks)
        write_rows(output_dir / "summary.csv", summary)
        write_rows(
            output_dir / "spectra.csv",
            [
                {"method": r["method"], "seed": r["seed"], "index": i, "eigenvalue": round(v, 6)}
                for r in runs
                for i, v in enumerate(r["spectrum"][:SPECTRUM_SHOWN])
            ],
        )
        images = {
            "per_task_accuracy": plot_per_task(output_dir / "per_task_accuracy.png", runs, s["methods"], tasks),
            "laplacian_spectrum": plot_spectrum(output_dir / "laplacian_spectrum.png", runs, s["methods"], int(s["k"])),
        }
        result = {
            "dataset": str(cfg.dataset.name), "tasks": [t.classes for t in tasks], "settings": s,
            "summary": summary, "comparison": comparison, "seconds": time.perf_counter() - start,
        }  # fmt: skip
        _log_curves(out.logger, runs)
        # results.csv is the per-task table written above (one row per method, seed and task)
        result = out.finish(result, [], images, console=format_table(summary, comparison))
        numbers = {f"summary/{row['method']}/{k}": float(v) for row in summary for k, v in row.items()
                   if isinstance(v, (int, float)) and v is not None}  # fmt: skip
        if comparison:
            numbers.update({f"summary/{k}": float(v) for k, v in comparison.items() if isinstance(v, float)})
        out.log_numbers(numbers)
    return result
