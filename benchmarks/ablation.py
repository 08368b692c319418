"""`ablation`: what each speed or memory measure buys the hfseg Attention U-Net (MONAI-equal widths).

```
python -m benchmarks.ablation                  # CPU, batch 8, 1x128x128, 4 classes, 2 threads
python -m benchmarks.ablation --compile        # also the torch.compile variant (compiling takes minutes on a CPU)
```

Variants of `hfseg-attention-unet`, each switching one measure off (per instance, so that all run interleaved in one
process, as in `benchmarks.models`), with MONAI's `AttentionUnet` as the reference:
- `default`: everything on (what hfseg does by default);
- `-channels-last`: the network runs in the default (channels-first) layout on the CPU;
- `-fold`: batch norms are not folded into the convolutions in eval mode;
- `-recompute`: training keeps every activation instead of recomputing norm, activation, gate and concatenation;
- `-lean-inference`: inference concatenates a separately gated skip (and keeps intermediates longer);
- `none`: all four off;
- `+bf16`: everything on, under bf16 autocast (CPUs with AVX512-BF16 or AMX, and GPUs);
- `+compile` (with `--compile`): everything on, `torch.compile`d.
The report gives each variant's figures and its ratio to `default`: what switching the measure off costs, i.e. what
the measure buys. Results go to `benchmarks/results/ablation-<tag>.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import common
from .models import BASELINE, TARGET, Runner, Settings, build_model, measure_memory, measure_speed, probe_memory

# variant -> switches turned off
SWITCHES = {
    "channels-last": [("UNetModel", "channels_last_on_cpu")],
    "fold": [("UNetConv", "fold_in_eval"), ("AttentionGate", "fold_in_eval")],
    "recompute": [("UNetStage", "recompute")],
    "lean-inference": [("UNetDecoderBlock", "lean_inference")],
}
VARIANTS = ["default", *(f"-{k}" for k in SWITCHES), "none", "+bf16"]


def switch_off(model: nn.Module, measures: Sequence[str]) -> nn.Module:
    """Turn the named measures (keys of `SWITCHES`) off on this model's modules (instance attributes)."""
    for measure in measures:
        for class_name, attribute in SWITCHES[measure]:
            for module in model.modules():
                if type(module).__name__ == class_name:
                    setattr(module, attribute, False)
    return model


def build_variant(name: str, num_channels: int = 1, num_labels: int = 4) -> nn.Module:
    """The Attention U-Net `name` variant (see `VARIANTS`), or a `benchmarks.models` model."""
    if name not in VARIANTS and name != "+compile":
        return build_model(name, num_channels, num_labels)
    model = build_model(TARGET, num_channels, num_labels)
    if name == "none":
        return switch_off(model, list(SWITCHES))
    if name.startswith("-"):
        return switch_off(model, [name[1:]])
    return model


def make_runner(name: str, settings: Settings, device: torch.device) -> Runner:
    """A `Runner` of the variant: `+bf16` under bf16 autocast, `+compile` compiled."""
    s = settings
    if name == "+compile":
        s = Settings(**{**s.__dict__, "compile": True})
    return Runner(name, s, device, build=build_variant, bf16=True if name == "+bf16" else None)


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Ratios of each row to `default`: speed-ups (> 1: faster than default) and memory ratios (> 1: more)."""
    base = results["default"]
    for row in results.values():
        row["train_vs_default"] = row["train_images_per_s"] / base["train_images_per_s"]
        row["infer_vs_default"] = base["infer_ms"] / row["infer_ms"]
        for mode in ("train", "infer"):
            if row.get(f"{mode}_peak_mib") is not None and base.get(f"{mode}_peak_mib"):
                row[f"{mode}_memory_vs_default"] = row[f"{mode}_peak_mib"] / base[f"{mode}_peak_mib"]


def markdown_report(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    lines = [
        f"### `ablation` ({report['tag']})", "",
        f"`{TARGET}`, batch {s['batch_size']}, {s['num_channels']}x{s['size']}x{s['size']}, {s['threads']} threads, "
        f"device {s['device']}; {s['rounds']} rounds x {s['steps']} steps. Machine: {m['cpu']} ({m['cpu_count']} "
        f"cores), load average {common.fmt(m['load_average_1min'], 2)} at start.", "",
    ]
    headers = ["variant", "train img/s", "vs default", "infer ms", "vs default", "train MiB", "vs default",
               "infer MiB", "vs default"]
    rows = [[f"`{n}`", common.fmt(r["train_images_per_s"]), common.fmt(r["train_vs_default"], 2),
             common.fmt(r["infer_ms"]), common.fmt(r["infer_vs_default"], 2), common.fmt(r.get("train_peak_mib"), 0),
             common.fmt(r.get("train_memory_vs_default"), 2), common.fmt(r.get("infer_peak_mib"), 0),
             common.fmt(r.get("infer_memory_vs_default"), 2)] for n, r in report["results"].items()]
    lines.append(common.markdown_table(headers, rows))
    lines += ["", "Speed columns: above 1 is faster than `default`; memory columns: above 1 needs more. A `-x` row "
                  "shows what measure x buys (its inverse)."]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join([*VARIANTS, BASELINE]),
                        help=f"comma-separated subset of: {', '.join(VARIANTS)}, +compile, {BASELINE}")
    parser.add_argument("--compile", action="store_true", help="add the +compile variant")
    for key in ("batch_size", "size", "threads", "warmup", "rounds", "steps"):
        parser.add_argument(f"--{key}", type=int, default=getattr(Settings(), key))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no_memory", action="store_true")
    parser.add_argument("--output", default=None)
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", default="none", help=argparse.SUPPRESS)  # passed through by the memory probe
    parser.add_argument("--channels_last", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--num_channels", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--num_labels", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--lr", type=float, default=1e-3, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = Settings(device=args.device, batch_size=args.batch_size, size=args.size, threads=args.threads,
                        warmup=args.warmup, rounds=args.rounds, steps=args.steps, num_channels=args.num_channels,
                        num_labels=args.num_labels, lr=args.lr)
    device = common.setup_torch(settings.threads, settings.device)
    if args.probe:
        print(json.dumps(probe_memory(args.probe, settings, device, runner=make_runner(args.probe, settings, device))))
        return {}
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    if args.compile and "+compile" not in names:
        names.append("+compile")
    if "default" not in names:
        names.insert(0, "default")
    machine = common.machine_info(device)
    print(f"ablation of {TARGET} on {machine['cpu']}: {', '.join(names)}")
    results = measure_speed(names, settings, device, make_runner=lambda n: make_runner(n, settings, device))
    if not args.no_memory:
        for name, found in measure_memory(names, settings, module="benchmarks.ablation").items():
            results[name].update(found)
    add_ratios(results)
    tag = torch.device(settings.device).type
    report = {"benchmark": "ablation", "tag": tag, "settings": settings.__dict__, "machine": machine,
              "results": results}
    output = Path(args.output) if args.output else common.RESULTS_DIR / f"ablation-{tag}.json"
    common.write_report(output, report, markdown_report(report))
    return report


if __name__ == "__main__":
    main()
