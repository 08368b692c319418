"""`models`: training and inference speed, peak memory, parameters and GFLOPs of hfseg models against MONAI and smp.

```
python -m benchmarks.models                      # CPU, batch 8, 1x128x128, 4 classes, 2 threads
python -m benchmarks.models --device cuda --bf16 --channels_last
python -m benchmarks.models --models hfseg-attention-unet,monai-attention-unet --rounds 3
```

Per model: **training** images/s from the median Adam step time (cross-entropy on random labels, the logits resized
to the input like the recipe does for Segformer's 1/4-resolution output), **inference** latency of one batch in eval
mode under `torch.inference_mode` (median), **peak memory** of a training step and of an inference batch over the
memory in use before it (in a fresh process per model, see `benchmarks.common`), parameter count and forward GFLOPs
(`FlopCounterMode`, batch included). Every model first runs `--warmup` steps (and is compiled there with
`--compile`); then `--rounds` rounds each run `--steps` steps of every model in turn, the order rotated each round,
so that load from other processes hits all models alike. Ratios are against `--baseline` (MONAI `AttentionUnet`):
speed-ups above 1 and memory ratios below 1 favour the model. Results go to `benchmarks/results/models-<tag>.json`
and a Markdown table next to it.

hfseg U-Nets run at MONAI-equal widths (`base_channels=16`: 16-32-64-128-256), `improved-unet` as its preset (the
same widths), `timm-unet` on a random-init resnet18, Segformer-b0 from scratch. `hfseg-attention-unet-1conv` is the
Attention U-Net with one convolution per decoder level (`convs_per_block=1`), MONAI `AttentionUnet`'s decoder depth.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import common
from .peers import PEERS, build_peer, peer_available

# name -> (zoo name, config kwargs)
HFSEG_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "hfseg-unet": ("unet", {"base_channels": 16}),
    "hfseg-attention-unet": ("attention-unet", {"base_channels": 16}),
    # One 3x3 convolution per decoder level, as MONAI's merge convolution (MONAI also upsamples by a 3x3 transposed
    # convolution with norm and ReLU where hfseg's is 2x2, without them): the same encoder, 9.9 GFLOPs.
    "hfseg-attention-unet-1conv": ("attention-unet", {"base_channels": 16, "convs_per_block": 1}),
    "hfseg-improved-unet": ("improved-unet", {}),
    "hfseg-timm-unet-resnet18": ("timm-unet", {"encoder": "resnet18"}),
    "hfseg-segformer-b0": ("segformer-b0", {}),
}
ALL_MODELS = [*HFSEG_MODELS, *PEERS]
BASELINE = "monai-attention-unet"
TARGET = "hfseg-attention-unet"
# The targets for TARGET against BASELINE: train speed-up, inference speed-up, peak memory ratio.
TARGETS = {"train_speedup": 1.3, "infer_speedup": 1.5, "memory_ratio": 0.8}


def build_model(name: str, num_channels: int = 1, num_labels: int = 4) -> nn.Module:
    """A benchmark model by name (see `ALL_MODELS`), randomly initialized, in training mode."""
    if name in HFSEG_MODELS:
        import hfseg

        zoo_name, kwargs = HFSEG_MODELS[name]
        return hfseg.create_model(zoo_name, num_labels=num_labels, num_channels=num_channels, **kwargs)
    if name in PEERS:
        return build_peer(name, num_channels=num_channels, num_labels=num_labels)
    raise ValueError(f"Unknown benchmark model {name!r}; available: {', '.join(ALL_MODELS)}.")


@dataclass
class Settings:
    """What one benchmark run measures; every field is a command-line flag."""

    device: str = "cpu"
    batch_size: int = 8
    size: int = 128
    num_channels: int = 1
    num_labels: int = 4
    threads: int | None = 2
    warmup: int = 2
    rounds: int = 5
    steps: int = 3
    lr: float = 1e-3
    bf16: str = "none"  # "none", "all" models, or "hfseg" models only (the peers as shipped)
    channels_last: bool = False
    compile: bool = False

    @property
    def tag(self) -> str:
        """File-name tag: `cpu`, `cuda-bf16-cl`, ..."""
        parts = [torch.device(self.device).type]
        parts += {"none": [], "all": ["bf16"], "hfseg": ["bf16hfseg"]}[self.bf16]
        parts += [flag for flag, on in (("cl", self.channels_last), ("compile", self.compile)) if on]
        return "-".join(parts)


Builder = Callable[[str, int, int], nn.Module]


class Runner:
    """One model with its optimizer and a fixed random batch: `train_step()` and `infer()`.

    `build(name, num_channels, num_labels)` makes the model (default `build_model`); `bf16` overrides the settings'
    choice for this model.
    """

    def __init__(self, name: str, settings: Settings, device: torch.device, build: Builder = build_model,
                 bf16: bool | None = None) -> None:
        s = settings
        torch.manual_seed(0)
        self.name, self.settings, self.device = name, s, device
        self.bf16 = (s.bf16 == "all" or (s.bf16 == "hfseg" and name in HFSEG_MODELS)) if bf16 is None else bf16
        self.model = build(name, s.num_channels, s.num_labels).to(device)
        if s.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if s.compile else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(s.batch_size, s.num_channels, s.size, s.size, generator=generator)
        self.pixel_values = common.to_memory_format(x.to(device), s.channels_last)
        self.labels = torch.randint(0, s.num_labels, (s.batch_size, s.size, s.size), generator=generator).to(device)

    def train_step(self) -> None:
        self.model.train()
        with common.autocast(self.device, self.bf16):
            logits = common.logits_of(self.forward(pixel_values=self.pixel_values))
        if logits.shape[-2:] != self.labels.shape[-2:]:
            logits = F.interpolate(logits, size=self.labels.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits.float(), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def infer(self) -> None:
        self.model.eval()
        with torch.inference_mode(), common.autocast(self.device, self.bf16):
            self.forward(pixel_values=self.pixel_values)


def measure_speed(names: Sequence[str], settings: Settings, device: torch.device, log=print,
                  make_runner: Callable[[str], Runner] | None = None) -> dict[str, dict[str, Any]]:
    """Interleaved rounds over `names`: per model the training and inference time summaries, the warm-up (and
    compile) seconds, parameters and GFLOPs. `make_runner(name)` defaults to `Runner(name, settings, device)`."""
    make_runner = make_runner or (lambda name: Runner(name, settings, device))
    runners = {}
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        runner = make_runner(name)
        x = runner.pixel_values
        results[name] = {"params_m": common.count_parameters(runner.model) / 1e6,
                         "gflops": common.forward_gflops(runner.model, x)}
        with common.stopwatch() as elapsed:
            for _ in range(settings.warmup):
                runner.train_step()
                runner.infer()
            common.synchronize(device)
        results[name]["warmup_s"] = elapsed()
        runners[name] = runner
        log(f"  built and warmed up {name} ({elapsed():.1f} s)")
    times: dict[str, dict[str, list[float]]] = {n: {"train": [], "infer": []} for n in names}
    for r in range(settings.rounds):
        for mode in ("train", "infer"):
            for name in common.rotated(list(names), r):
                fn = runners[name].train_step if mode == "train" else runners[name].infer
                for _ in range(settings.steps):
                    times[name][mode].append(common.timed(fn, device))
        log(f"  round {r + 1}/{settings.rounds} done")
    for name in names:
        train, infer = common.summarize(times[name]["train"]), common.summarize(times[name]["infer"])
        results[name].update(
            train_images_per_s=settings.batch_size / train["median_s"], train_step=train,
            infer_ms=infer["median_s"] * 1000, infer=infer,
            infer_gflops_per_s=results[name]["gflops"] / infer["median_s"],
        )
    return results


def probe_memory(name: str, settings: Settings, device: torch.device, steps: int = 2,
                 runner: Runner | None = None) -> dict[str, Any]:
    """Peak memory (MiB over what is in use before) of `steps` inference batches, then of `steps` training steps,
    each after `settings.warmup` unmeasured ones. Meant for a fresh process (`--probe`)."""
    runner = runner or Runner(name, settings, device)
    out: dict[str, Any] = {}
    for mode, fn in (("infer", runner.infer), ("train", runner.train_step)):
        for _ in range(max(settings.warmup, 1)):
            fn()
        with common.PeakMemory(device) as peak:
            for _ in range(steps):
                fn()
        out[f"{mode}_peak_mib"] = peak.mib
        out["method"] = peak.method
    return out


def _probe_args(name: str, settings: Settings) -> list[str]:
    args = [f"--probe={name}"]  # one token: a name may start with "-"
    for key, value in asdict(settings).items():
        if key == "bf16":
            args += ["--bf16", value]
        elif isinstance(value, bool):
            args += [f"--{key}"] if value else []
        elif value is not None:
            args += [f"--{key}", str(value)]
    return args


def measure_memory(names: Sequence[str], settings: Settings, log=print,
                   module: str = "benchmarks.models") -> dict[str, dict[str, Any]]:
    """`probe_memory` of each model, one fresh process each (`python -m module --probe NAME ...`), in turn."""
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            found[name] = common.run_probe(module, _probe_args(name, settings))
        except (RuntimeError, ValueError) as err:  # one failed probe must not lose the other results
            found[name] = {"memory_error": str(err)[-500:]}
            log(f"  memory of {name}: probe failed ({str(err)[-200:]})")
            continue
        log(f"  memory of {name}: train {found[name]['train_peak_mib']:.0f} MiB, "
            f"inference {found[name]['infer_peak_mib']:.0f} MiB")
    return found


def add_ratios(results: dict[str, dict[str, Any]], baseline: str) -> None:
    """Speed-ups and memory ratios of every model against `baseline` (in place; nothing when it was not run)."""
    base = results.get(baseline)
    if base is None:
        return
    for row in results.values():
        row["train_speedup"] = row["train_images_per_s"] / base["train_images_per_s"]
        row["infer_speedup"] = base["infer_ms"] / row["infer_ms"]
        for mode in ("train", "infer"):
            if row.get(f"{mode}_peak_mib") is not None and base.get(f"{mode}_peak_mib"):
                row[f"{mode}_memory_ratio"] = row[f"{mode}_peak_mib"] / base[f"{mode}_peak_mib"]


def check_targets(results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The issue's targets for `TARGET` against `BASELINE`: each value and whether it is met."""
    row = results.get(TARGET)
    if row is None or "train_speedup" not in row:
        return None
    checks = {"train_speedup": row["train_speedup"] >= TARGETS["train_speedup"],
              "infer_speedup": row["infer_speedup"] >= TARGETS["infer_speedup"]}
    for mode in ("train", "infer"):
        if f"{mode}_memory_ratio" in row:
            checks[f"{mode}_memory_ratio"] = row[f"{mode}_memory_ratio"] <= TARGETS["memory_ratio"]
    return {"model": TARGET, "baseline": BASELINE, "targets": TARGETS,
            "values": {k: row[k] for k in checks}, "met": checks}


def markdown_report(report: dict[str, Any]) -> str:
    """The results as a Markdown section: settings, machine, the table, the targets."""
    s, m = report["settings"], report["machine"]
    v = m["versions"]
    lines = [
        f"### `models` ({report['tag']})",
        "",
        f"Batch {s['batch_size']}, {s['num_channels']}x{s['size']}x{s['size']}, {s['num_labels']} classes, "
        f"{s['threads']} threads, device {s['device']}, bf16 {s['bf16']}, channels_last {s['channels_last']}, "
        f"compile {s['compile']}; {s['rounds']} rounds x {s['steps']} steps after {s['warmup']} warm-up. "
        f"Machine: {m['cpu']} ({m['cpu_count']} cores{', ' + m['gpu'] if m.get('gpu') else ''}), load average "
        f"{common.fmt(m['load_average_1min'], 2)} at start. torch {v['torch']}, transformers {v['transformers']}, "
        f"timm {v['timm']}, monai {v['monai']}, smp {v['segmentation-models-pytorch']}.",
        "",
    ]
    headers = ["model", "params (M)", "GFLOPs", "train img/s", "x train", "infer ms", "x infer", "GFLOP/s",
               "train MiB", "x mem", "infer MiB", "x mem"]
    rows = []
    for name, r in report["results"].items():
        rows.append([
            f"`{name}`", common.fmt(r["params_m"], 2), common.fmt(r["gflops"], 2),
            common.fmt(r["train_images_per_s"]), common.fmt(r.get("train_speedup"), 2),
            common.fmt(r["infer_ms"]), common.fmt(r.get("infer_speedup"), 2), common.fmt(r["infer_gflops_per_s"], 0),
            common.fmt(r.get("train_peak_mib"), 0), common.fmt(r.get("train_memory_ratio"), 2),
            common.fmt(r.get("infer_peak_mib"), 0), common.fmt(r.get("infer_memory_ratio"), 2),
        ])
    lines.append(common.markdown_table(headers, rows))
    lines.append("")
    lines.append(f"Ratios against `{report['baseline']}`: x train and x infer are speed-ups (higher is better), "
                 "x mem is peak memory over the baseline's (lower is better).")
    targets = report.get("targets")
    if targets:
        met = ", ".join(f"{k} {targets['values'][k]:.2f} ({'met' if ok else 'NOT met'})"
                        for k, ok in targets["met"].items())
        lines += ["", f"Targets for `{targets['model']}` (train >= {TARGETS['train_speedup']}, inference >= "
                      f"{TARGETS['infer_speedup']}, memory <= {TARGETS['memory_ratio']}): {met}."]
    skipped = report.get("skipped")
    if skipped:
        lines += ["", f"Skipped (library not installed): {', '.join(skipped)}."]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Settings()
    parser.add_argument("--models", default=",".join(ALL_MODELS),
                        help=f"comma-separated subset of: {', '.join(ALL_MODELS)}")
    parser.add_argument("--baseline", default=BASELINE, help="model the ratios are against")
    for key, value in asdict(defaults).items():
        if key == "bf16":
            parser.add_argument("--bf16", nargs="?", const="all", default="none", choices=("none", "all", "hfseg"),
                                help="bf16 autocast: for all models (`--bf16`), or for the hfseg models only "
                                     "(`--bf16 hfseg`: hfseg's CPU setting against the peers as shipped)")
        elif isinstance(value, bool):
            parser.add_argument(f"--{key}", action="store_true")
        else:
            parser.add_argument(f"--{key}", type=type(value) if value is not None else int, default=value)
    parser.add_argument("--no_memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/models-<tag>.json); "
                                                       "the Markdown table is written next to it")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # internal: one model's memory probe
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(**{k: getattr(args, k) for k in asdict(Settings())})


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = settings_from(args)
    device = common.setup_torch(settings.threads, settings.device)
    if args.probe:
        print(json.dumps(probe_memory(args.probe, settings, device)))
        return {}
    if settings.bf16 != "none" and device.type == "cpu" and not common.cpu_supports_bf16():
        print("warning: this CPU has no native bf16 (AVX512-BF16/AMX); bf16 autocast will be emulated and slow.",
              file=sys.stderr)
    requested = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in requested if n not in ALL_MODELS]
    if unknown:
        raise SystemExit(f"Unknown model(s) {', '.join(unknown)}; available: {', '.join(ALL_MODELS)}.")
    skipped = [n for n in requested if n in PEERS and not peer_available(n)]
    names = [n for n in requested if n not in skipped]
    if skipped:
        print(f"Skipping {', '.join(skipped)}: {PEERS[skipped[0]][0]} is not installed. "
              f"Install the peers with: pip install -e \".[bench]\"", file=sys.stderr)
    machine = common.machine_info(device)
    print(f"models benchmark ({settings.tag}) on {machine['cpu']}: {', '.join(names)}")
    results = measure_speed(names, settings, device)
    if not args.no_memory:
        for name, found in measure_memory(names, settings).items():
            results[name].update(found)
    add_ratios(results, args.baseline)
    report = {"benchmark": "models", "tag": settings.tag, "settings": asdict(settings), "machine": machine,
              "baseline": args.baseline, "results": results, "targets": check_targets(results), "skipped": skipped}
    report["machine"]["load_average_1min_end"] = common.machine_info(device)["load_average_1min"]
    output = Path(args.output) if args.output else common.RESULTS_DIR / f"models-{settings.tag}.json"
    common.write_report(output, report, markdown_report(report))
    return report


if __name__ == "__main__":
    main()
