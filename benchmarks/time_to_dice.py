"""`time_to_dice`: how long each model takes, trained by the demo recipe, to first reach a validation Dice.

```
python -m benchmarks.time_to_dice                      # 4 models x fp32/bf16 x seeds 0,1,2, threshold 0.84
python -m benchmarks.time_to_dice --models hfseg-attention-unet,smp-unet-resnet18 --precisions bf16 --seeds 0
python -m benchmarks.time_to_dice --lrs 1e-3,3e-3       # also sweep the learning rate
python -m benchmarks.time_to_dice --models monai-unet --precisions bf16 --seeds 1,2 --merge first.json
python -m benchmarks.time_to_dice --models "" --merge a.json,b.json    # only combine earlier runs
```

Every run is the bundled `demo` config (`hfseg/training/configs/demo.yaml`: its model for hfseg, its data, loss,
optimizer, schedule, epochs and batch) through `hfseg.training.trainer.Trainer`, with the validation split
evaluated every epoch (the recipe's `train.eval_every: 1`). The peers (`benchmarks.peers`) are built seeded and
handed to the same loop. Only what does not change the training is overridden: no tracker, no prediction panels.
Per setting (model x `train.mixed_precision` x learning rate) and seed it records, at the first evaluation whose
mean foreground Dice reaches `--threshold`: the training time to that point, wall (`time.perf_counter`) and CPU
(`time.process_time` of the process plus its children, all threads), **excluding** evaluation and the saving of
checkpoints and models (both timed and reported as well, with the totals that include them); the epoch and step;
and the final validation Dice. The load average is recorded at each run's start: wall times on a shared machine
are inflated, CPU times much less. A model's best setting is the one where most seeds reach the threshold, then
the lowest mean training CPU time to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from . import common
from .peers import PEERS, build_peer, peer_available

HFSEG_MODEL = "hfseg-attention-unet"  # the demo config's own model
MODELS = (HFSEG_MODEL, "monai-attention-unet", "monai-unet", "smp-unet-resnet18")
METRIC = "mean_foreground_dice"
TARGET_RATIO = 0.7  # hfseg's time to the threshold over the fastest peer's, at most


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children, in seconds."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


class RunClock:
    """Training time of a run with evaluation and saving left out; `mark` records it at each evaluation."""

    def __init__(self) -> None:
        self.wall0 = self.cpu0 = 0.0
        self.excluded = {"eval": [0.0, 0.0], "save": [0.0, 0.0]}  # wall, cpu
        self.marks: list[dict[str, Any]] = []

    def start(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()

    def now(self) -> dict[str, float]:
        """Training wall and CPU seconds so far (excluded work left out) and the totals."""
        wall, cpu = time.perf_counter() - self.wall0, cpu_seconds() - self.cpu0
        skipped_wall = sum(w for w, _ in self.excluded.values())
        skipped_cpu = sum(c for _, c in self.excluded.values())
        return {"train_wall_s": wall - skipped_wall, "train_cpu_s": cpu - skipped_cpu, "total_wall_s": wall,
                "total_cpu_s": cpu}

    @contextmanager
    def leave_out(self, kind: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self.excluded[kind][0] += time.perf_counter() - wall
            self.excluded[kind][1] += cpu_seconds() - cpu


def _timed_trainer(cfg: Any, model: torch.nn.Module | None) -> Any:
    """A `Trainer` whose evaluations and saves are timed apart from training, each evaluation marked."""
    from hfseg.training.trainer import Trainer

    class TimedTrainer(Trainer):
        clock = RunClock()

        def fit(self) -> dict[str, Any]:
            self.clock.start()
            return super().fit()

        def evaluate(self, epoch: int) -> dict[str, Any]:
            at = self.clock.now()  # training time up to this evaluation
            with self.clock.leave_out("eval"):
                result = super().evaluate(epoch)
            self.clock.marks.append({"epoch": epoch, "step": self.state.step, "dice": result.get(METRIC),
                                     **{k: round(v, 2) for k, v in at.items()}})
            return result

        def save_checkpoint(self) -> None:
            with self.clock.leave_out("save"):
                super().save_checkpoint()

        def save_model(self, name: str) -> Path:
            with self.clock.leave_out("save"):
                return super().save_model(name)

    TimedTrainer.clock = RunClock()
    return TimedTrainer(cfg, model)


def run_config(precision: str, seed: int, output_dir: str, lr: float | None = None,
               extra: dict[str, Any] | None = None) -> Any:
    """The demo recipe's config for one run: only the tracker and panels off, and the precision, seed, output
    folder and (when given) learning rate set."""
    from hfseg.training.config import load_config

    values: dict[str, Any] = {"train.mixed_precision": precision, "train.seed": seed, "train.output_dir": output_dir,
                              "train.overwrite_output_dir": True,
                              "train.report_to": None, "train.panels": 0, **(extra or {})}
    if lr is not None:
        values["optim.lr"] = lr
    return load_config("demo", values=values)


def train_once(name: str, cfg: Any, threshold: float) -> dict[str, Any]:
    """One run of model `name`; the time to `threshold`, the final Dice and the per-evaluation marks."""
    from accelerate.utils import set_seed

    from hfseg.data import DEMO_ID2LABEL

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    setup = time.perf_counter()
    model = None
    if name in PEERS:
        set_seed(cfg.train.seed)
        model = build_peer(name, num_channels=1, num_labels=len(DEMO_ID2LABEL))
    trainer = _timed_trainer(cfg, model)
    setup_s = time.perf_counter() - setup
    summary = trainer.fit()
    clock = trainer.clock
    first = next((m for m in clock.marks if m["dice"] is not None and m["dice"] >= threshold), None)
    return {"seed": cfg.train.seed, "load_average_1min": load, "reached": first is not None,
            "at": first, "final_dice": (summary.get("final") or {}).get(METRIC), "best_dice": summary.get("best"),
            "steps": summary["steps"], "setup_s": round(setup_s, 2),
            "eval_wall_s": round(clock.excluded["eval"][0], 2), "eval_cpu_s": round(clock.excluded["eval"][1], 2),
            "save_wall_s": round(clock.excluded["save"][0], 2), "save_cpu_s": round(clock.excluded["save"][1], 2),
            **{k: round(v, 2) for k, v in clock.now().items()}, "marks": clock.marks}


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _sd(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over the seeds; times to the threshold over the seeds that reached it."""
    reached = [r for r in runs if r["reached"]]
    out: dict[str, Any] = {"seeds": len(runs), "reached": len(reached),
                           "final_dice_mean": _mean([r["final_dice"] for r in runs]),
                           "final_dice_sd": _sd([r["final_dice"] for r in runs])}
    for key in ("train_wall_s", "train_cpu_s", "total_wall_s", "total_cpu_s", "epoch"):
        values = [r["at"][key] for r in reached]
        out[f"{key}_mean"], out[f"{key}_sd"] = _mean(values), _sd(values)
    out["run_train_cpu_s_mean"] = _mean([r["train_cpu_s"] for r in runs])
    out["load_average_mean"] = _mean([r["load_average_1min"] for r in runs])
    return out


def best_settings(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, str]:
    """Per model, the setting with the most seeds reaching the threshold, then the least training CPU time to it."""
    def key(item: tuple[str, dict[str, Any]]) -> tuple[float, float]:
        s = item[1]
        return -s["reached"], s["train_cpu_s_mean"] if s["train_cpu_s_mean"] is not None else float("inf")

    return {model: min(settings.items(), key=key)[0] for model, settings in results.items() if settings}


def check_target(results: dict[str, dict[str, dict[str, Any]]], best: dict[str, str]) -> dict[str, Any]:
    """hfseg's best time to the threshold over the fastest peer's (CPU and wall), against `TARGET_RATIO`."""
    if HFSEG_MODEL not in best:
        return {}
    ours = results[HFSEG_MODEL][best[HFSEG_MODEL]]
    peers = {m: results[m][s] for m, s in best.items() if m != HFSEG_MODEL and results[m][s]["reached"]}
    if not peers or not ours["reached"]:
        return {"hfseg_reached": bool(ours["reached"]), "peers_reaching": sorted(peers)}
    out: dict[str, Any] = {"target_ratio": TARGET_RATIO}
    for clock in ("train_cpu_s", "train_wall_s"):
        fastest = min(peers, key=lambda m: peers[m][f"{clock}_mean"])
        ratio = ours[f"{clock}_mean"] / peers[fastest][f"{clock}_mean"]
        out[clock] = {"fastest_peer": fastest, "ratio": ratio, "met": ratio <= TARGET_RATIO}
    return out


def _fmt(mean: float | None, sd: float | None, digits: int = 0) -> str:
    return "n/a" if mean is None else f"{mean:.{digits}f} +- {sd or 0:.{digits}f}"


def markdown_report(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    loads = [r["load_average_1min"] for runs in report["runs"].values() for r in runs]
    lines = [
        "### `time_to_dice`", "",
        f"Training time until the validation mean foreground Dice first reaches {s['threshold']} (evaluated every "
        f"epoch), demo recipe (`demo.yaml`: {s['recipe']}), seeds {', '.join(map(str, s['seeds']))}, "
        f"{s['threads']} threads. Times leave out evaluation and saving; CPU is the process's CPU time. Machine: "
        f"{m['cpu']} ({m['cpu_count']} cores, bf16 {'native' if m['cpu_bf16'] else 'emulated'}), load average "
        f"{min(loads):.1f}-{max(loads):.1f} at run starts (shared: wall times inflated). "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v and k != "hfseg") + ".", "",
    ]
    headers = ["model", "precision, lr", "reached", "train CPU s to Dice", "train wall s to Dice", "epoch",
               "total wall s (with eval)", "final Dice", "best"]
    rows = []
    for model, settings in report["results"].items():
        for setting, r in settings.items():
            rows.append([f"`{model}`", setting, f"{r['reached']}/{r['seeds']}",
                         _fmt(r["train_cpu_s_mean"], r["train_cpu_s_sd"]),
                         _fmt(r["train_wall_s_mean"], r["train_wall_s_sd"]),
                         _fmt(r["epoch_mean"], r["epoch_sd"], 1), _fmt(r["total_wall_s_mean"], r["total_wall_s_sd"]),
                         _fmt(r["final_dice_mean"], r["final_dice_sd"], 4),
                         "yes" if report["best"].get(model) == setting else ""])
    lines.append(common.markdown_table(headers, rows))
    target = report.get("target") or {}
    if "train_cpu_s" in target:
        lines.append("")
        for clock, label in (("train_cpu_s", "CPU"), ("train_wall_s", "wall")):
            t = target[clock]
            lines.append(f"- `{HFSEG_MODEL}` ({report['best'][HFSEG_MODEL]}) over the fastest peer "
                         f"(`{t['fastest_peer']}`, {report['best'][t['fastest_peer']]}), {label} time: "
                         f"{t['ratio']:.2f}x ({'met' if t['met'] else 'NOT met'}: target <= {TARGET_RATIO}x).")
    elif target:
        lines += ["", f"No ratio: hfseg reached the threshold: {target.get('hfseg_reached')}; peers reaching it: "
                      f"{', '.join(target.get('peers_reaching') or []) or 'none'}."]
    if report.get("skipped"):
        lines += ["", f"Skipped (library not installed): {', '.join(report['skipped'])}."]
    return "\n".join(lines) + "\n"


def _recipe_summary(cfg: Any) -> str:
    return (f"{cfg.train.epochs} epochs x batch {cfg.train.batch_size}, {cfg.optim.name} lr {cfg.optim.lr:g}, "
            f"{cfg.scheduler.name} schedule, warm-up {cfg.scheduler.warmup_steps} steps, {cfg.loss.name}, "
            f"{cfg.data.size[0]} px")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of: {', '.join(MODELS)}")
    parser.add_argument("--precisions", default="no,bf16", help="train.mixed_precision values to try per model")
    parser.add_argument("--lrs", default=None, help="learning rates to try per model (default: the recipe's)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threshold", type=float, default=0.84)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a busy machine: see README)")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs (smoke tests)")
    parser.add_argument("--size", type=int, default=None, help="override data.size (smoke tests)")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--cache_dir", default=None, help="datasets cache for the demo dataset")
    parser.add_argument("--merge", default=None, help="comma-separated earlier time_to_dice JSON files whose runs "
                                                         "are added to this one's (e.g. more seeds for some settings)")
    parser.add_argument("--keep_runs", default=None, help="folder to keep the run outputs in (default: deleted)")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/time_to_dice.json)")
    return parser.parse_args(argv)


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if args.epochs:
        extra["train.epochs"] = args.epochs
    if args.size:
        extra["data.size"] = [args.size, args.size]
    if args.max_train_samples:
        extra["data.max_train_samples"] = args.max_train_samples
    if args.max_eval_samples:
        extra["data.max_eval_samples"] = args.max_eval_samples
    if args.cache_dir:
        extra["data.options"] = {"cache_dir": args.cache_dir}
    return extra


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    requested = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in requested if n not in MODELS]
    if unknown:
        raise SystemExit(f"Unknown model(s) {', '.join(unknown)}; available: {', '.join(MODELS)}.")
    skipped = [n for n in requested if n in PEERS and not peer_available(n)]
    names = [n for n in requested if n not in skipped]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    lrs: list[float | None] = [float(v) for v in args.lrs.split(",")] if args.lrs else [None]
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = _extra(args)
    import hfseg.threads  # noqa: F401  (imported first, the count set below is a user's choice the trainer keeps)

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    recipe = run_config("no", 0, "unused", extra=extra)
    settings = {"threshold": args.threshold, "seeds": seeds, "threads": args.threads, "precisions": precisions,
                "lrs": [recipe.optim.lr if lr is None else lr for lr in lrs], "recipe": _recipe_summary(recipe),
                "overrides": extra, "metric": METRIC, "timing": "train time excludes evaluation and saving"}
    machine = common.machine_info(torch.device("cpu"))
    output = Path(args.output) if args.output else common.RESULTS_DIR / "time_to_dice.json"
    root = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="hfseg-ttd-"))
    combos = [(n, p, lr) for n in names for p in precisions for lr in lrs]
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in (args.merge or "").split(","):
        if path.strip():
            for key, earlier in json.loads(Path(path.strip()).read_text())["runs"].items():
                runs.setdefault(key, []).extend(earlier)
    try:
        for i, seed in enumerate(seeds):  # seeds outermost, order rotated: drifting load hits every setting
            for name, precision, lr in common.rotated(combos, i):
                setting = f"{precision}, {recipe.optim.lr if lr is None else lr:g}"
                cfg = run_config(precision, seed, str(root / f"{name}-{precision}-{lr}-seed{seed}"), lr, extra)
                result = train_once(name, cfg, args.threshold)
                runs.setdefault(f"{name} | {setting}", []).append(result)
                at = result["at"] or {}
                print(f"  {name:22s} {setting:12s} seed {seed}: to {args.threshold} "
                      f"{at.get('train_cpu_s', 'n/a')} CPU s / {at.get('train_wall_s', 'n/a')} s (epoch "
                      f"{at.get('epoch', '-')}), final Dice {result['final_dice']:.4f}, load "
                      f"{result['load_average_1min']:.1f}", flush=True)
                report = _report(runs, settings, machine, skipped)
                common.write_json(output, report)  # partial results survive an interrupted run
    finally:
        torch.set_num_threads(threads)
        if not args.keep_runs:
            shutil.rmtree(root, ignore_errors=True)
    settings["seeds"] = sorted({r["seed"] for rs in runs.values() for r in rs})  # merged runs' too
    report = _report(runs, settings, machine, skipped)
    common.write_report(output, report, markdown_report(report))
    return report


def _report(runs: dict[str, list[dict[str, Any]]], settings: dict[str, Any], machine: dict[str, Any],
            skipped: list[str]) -> dict[str, Any]:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for key, rs in runs.items():
        model, setting = key.split(" | ")
        results.setdefault(model, {})[setting] = summarize(rs)
    best = best_settings(results)
    return {"benchmark": "time_to_dice", "settings": settings, "machine": machine, "results": results,
            "best": best, "target": check_target(results, best), "runs": runs, "skipped": skipped}


if __name__ == "__main__":
    main()
