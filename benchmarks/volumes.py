"""`volumes`: 3D sliding-window inference and 3D training against MONAI, on the CPU in fp32.

```
python -m benchmarks.volumes                                   # 160x160x128 random volume, patch 96^3
python -m benchmarks.volumes --volume mni --patch 64 --repeats 5
python -m benchmarks.volumes --no_train --no_memory            # timing of the sliding windows only
```

**(a) Sliding window.** hfseg's `hfseg.inference.sliding_window` against MONAI's
`monai.inferers.sliding_window_inference`, both with MONAI's 3D `UNet` (channels 16-32-64-128-256, strides 2, 2
residual units, random init, eval mode) on one single-channel volume (random normal, or the MNI ICBM152 T1 template
z-scored), the same patch, half overlap, Gaussian weighting with sigma 1/8 of the patch (MONAI `mode="gaussian"`,
`sigma_scale=0.125`), the same windows per forward pass, both under `torch.inference_mode`. A second model, a 1x1x1
convolution, costs next to nothing, so its times are the inferers' own work (padding, gathering windows, weighting,
stitching, dividing). Each method is warmed up once, then `--repeats` rounds run every (model, method) in turn, the
order rotated each round; the median is reported. The outputs are compared (max and mean absolute difference of the
logits, agreement of the argmax): they differ slightly because the windows are placed differently (nnU-Net spreads
them evenly, MONAI steps by `int(patch * (1 - overlap))` and clips the last) and MONAI floors its weights at 1e-3.

**Peak memory** of one call, in a fresh process per model and method (`benchmarks.common.PeakMemory`: the
resident-set high-water mark `VmHWM`, reset through `/proc/self/clear_refs` just before the call, minus the RSS
then, glibc returning freed blocks of 64 KiB or more to the system), after one unmeasured warm-up call: the model,
the volume and what the first call left cached are the baseline.

**(b) Training.** Images/s of hfseg's 3D `attention-unet` (`hidden_sizes` 16-32-64-128-256) against MONAI's 3D
`AttentionUnet` (the same channels, strides 2): a fixed random batch (`--train_batch` x 1 x `--train_patch`^3,
random labels of 2 classes), cross-entropy, Adam 1e-3; `--train_warmup` steps, then `--train_rounds` rounds of
`--train_steps` steps of each model in turn (rotated), images/s from the median step.

Results go to `benchmarks/results/volumes.json` and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import common

METHODS = ("hfseg", "monai")
MODELS = ("unet", "pointwise")


@dataclass
class Settings:
    """What one run measures; every field is a command-line flag."""

    shape: list[int] = field(default_factory=lambda: [160, 160, 128])
    volume: str = "random"  # "random" (normal, seeded) or "mni" (the MNI T1 template, z-scored; --shape ignored)
    patch: int = 96
    overlap: float = 0.5
    sw_batch_size: int = 1
    num_labels: int = 2
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    repeats: int = 5
    threads: int | None = None
    train_patch: int = 64
    train_batch: int = 2
    train_warmup: int = 1
    train_rounds: int = 3
    train_steps: int = 2


# -- part (a): sliding windows -----------------------------------------------------------------------------------
def build_net(name: str, settings: Settings) -> nn.Module:
    """MONAI's 3D `UNet` (`"unet"`) or a 1x1x1 convolution (`"pointwise"`), seeded, in eval mode."""
    torch.manual_seed(0)
    if name == "pointwise":
        return nn.Conv3d(1, settings.num_labels, 1).eval()
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=settings.num_labels, channels=settings.channels,
                strides=[2] * (len(settings.channels) - 1), num_res_units=2).eval()


def load_volume(settings: Settings) -> torch.Tensor:
    """(1, X, Y, Z) float32: seeded normal noise of `settings.shape`, or the MNI T1 template z-scored."""
    if settings.volume == "random":
        return torch.randn(1, *settings.shape, generator=torch.Generator().manual_seed(0))
    if settings.volume != "mni":
        raise ValueError(f"--volume must be 'random' or 'mni', got {settings.volume!r}.")
    from hfseg.io import read_nifti

    from .volume import template_path

    array = torch.from_numpy(read_nifti(template_path(), dtype="float32").array.copy())
    return ((array - array.mean()) / array.std())[None]


def inferers(settings: Settings) -> dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]]:
    """method -> `fn(net, volume)` giving (K, X, Y, Z) logits."""
    from monai.inferers import sliding_window_inference

    from hfseg.inference import sliding_window

    patch = (settings.patch,) * 3

    def hfseg_fn(net: nn.Module, volume: torch.Tensor) -> torch.Tensor:
        return sliding_window(net, volume, patch, step=1 - settings.overlap, batch_size=settings.sw_batch_size)

    def monai_fn(net: nn.Module, volume: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return sliding_window_inference(volume[None], patch, settings.sw_batch_size, net,
                                            overlap=settings.overlap, mode="gaussian", sigma_scale=0.125)[0]

    return {"hfseg": hfseg_fn, "monai": monai_fn}


class Counter(nn.Module):
    """`net` with a count of the windows it is given and of the seconds spent in it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.windows, self.seconds = net, 0, 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += x.shape[0]
        start = time.perf_counter()
        out = self.net(x)
        self.seconds += time.perf_counter() - start
        return out


def compare(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    diff = (a.float() - torch.as_tensor(b).float()).abs()
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "logit_scale": float(a.abs().mean()),
            "argmax_agreement": float((a.argmax(0) == torch.as_tensor(b).argmax(0)).float().mean())}


def measure_sliding(settings: Settings, log=print) -> dict[str, Any]:
    """Per model: windows, time summaries of both methods (interleaved rounds) and how far their outputs differ."""
    volume = load_volume(settings)
    fns = inferers(settings)
    results: dict[str, Any] = {}
    nets = {name: Counter(build_net(name, settings)) for name in MODELS}
    for name, net in nets.items():
        outputs = {}
        for method, fn in fns.items():
            net.windows = 0
            with common.stopwatch() as elapsed:
                outputs[method] = fn(net, volume)
            results.setdefault(name, {})[method] = {"windows": net.windows, "warmup_s": elapsed()}
        results[name]["agreement"] = compare(outputs["hfseg"], outputs["monai"])
        warm = ", ".join(f"{m} {results[name][m]['warmup_s']:.2f} s" for m in METHODS)
        log(f"  {name}: warmed up ({warm})")
    runs = [(name, method) for name in MODELS for method in METHODS]
    times: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    cpu: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    inside: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for r in range(settings.repeats):
        for name, method in common.rotated(runs, r):
            nets[name].seconds = 0.0
            start = time.process_time()
            times[name, method].append(common.timed(lambda: fns[method](nets[name], volume), torch.device("cpu")))
            cpu[name, method].append(time.process_time() - start)
            inside[name, method].append(nets[name].seconds)
        log(f"  round {r + 1}/{settings.repeats} done")
    for name, method in runs:
        own = [t - f for t, f in zip(times[name, method], inside[name, method])]
        results[name][method].update(common.summarize(times[name, method]), times_s=times[name, method],
                                     cpu_s=statistics.median(cpu[name, method]), cpu_times_s=cpu[name, method],
                                     model_s=statistics.median(inside[name, method]), own_s=statistics.median(own))
    for name in MODELS:  # per round, MONAI's time over hfseg's: the two ran close together, under the same load
        results[name]["speedup"] = statistics.median(m / h for m, h in zip(times[name, "monai"], times[name, "hfseg"]))
        results[name]["speedup_of_medians"] = results[name]["monai"]["median_s"] / results[name]["hfseg"]["median_s"]
        results[name]["cpu_speedup"] = statistics.median(m / h for m, h in zip(cpu[name, "monai"], cpu[name, "hfseg"]))
    results["shape"] = list(volume.shape[1:])
    return results


def probe_memory(model: str, method: str, settings: Settings) -> dict[str, Any]:
    """Peak memory (MiB over the RSS before) of one call of `method` with `model`, after one warm-up call.
    Meant for a fresh process (`--probe model:method`)."""
    net, volume = build_net(model, settings), load_volume(settings)
    fn = inferers(settings)[method]
    fn(net, volume)
    with common.PeakMemory(torch.device("cpu")) as peak:
        out = fn(net, volume)
    return {"peak_mib": peak.mib, "method": peak.method, "output_mib": out.numel() * out.element_size() / 2**20}


def measure_memory(settings: Settings, log=print) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for model in MODELS:
        for method in METHODS:
            try:
                found.setdefault(model, {})[method] = common.run_probe("benchmarks.volumes",
                                                                       _probe_args(f"{model}:{method}", settings))
            except (RuntimeError, ValueError) as err:  # one failed probe must not lose the other results
                found[model][method] = {"memory_error": str(err)[-500:]}
                log(f"  memory of {model} / {method}: probe failed ({str(err)[-200:]})")
                continue
            log(f"  memory of {model} / {method}: {found[model][method]['peak_mib']:.0f} MiB")
    return found


# -- part (b): training ------------------------------------------------------------------------------------------
def build_trainee(name: str, settings: Settings) -> nn.Module:
    """hfseg's 3D `attention-unet` or MONAI's 3D `AttentionUnet` at the same widths, seeded, in training mode."""
    torch.manual_seed(0)
    if name == "hfseg-attention-unet":
        import hfseg

        return hfseg.create_model("attention-unet", spatial_dims=3, hidden_sizes=list(settings.channels),
                                  num_channels=1, num_labels=settings.num_labels)
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(spatial_dims=3, in_channels=1, out_channels=settings.num_labels,
                         channels=settings.channels, strides=[2] * (len(settings.channels) - 1))


TRAINEES = ("hfseg-attention-unet", "monai-attention-unet")


class TrainStep:
    """One model, its Adam optimizer and a fixed random batch: `step()` is one training step."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.model = build_trainee(name, settings).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        size = (settings.train_batch, *(settings.train_patch,) * 3)
        self.x = torch.randn(settings.train_batch, 1, *size[1:], generator=generator)
        self.labels = torch.randint(0, settings.num_labels, size, generator=generator)

    def step(self) -> None:
        logits = common.logits_of(self.model(self.x))
        loss = F.cross_entropy(logits, self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def measure_training(settings: Settings, log=print) -> dict[str, Any]:
    """Images/s of each trainee (interleaved rounds), or why hfseg's 3D model could not be built."""
    try:
        runners = {name: TrainStep(name, settings) for name in TRAINEES}
    except (TypeError, ValueError, NotImplementedError) as err:
        log(f"  training skipped: {err}")
        return {"skipped": f"hfseg's 3D attention-unet could not be built: {str(err)[:300]}"}
    results: dict[str, Any] = {}
    for name, runner in runners.items():
        with common.stopwatch() as elapsed:
            for _ in range(settings.train_warmup):
                runner.step()
        results[name] = {"params_m": common.count_parameters(runner.model) / 1e6, "warmup_s": elapsed()}
    times: dict[str, list[float]] = {name: [] for name in TRAINEES}
    cpu: dict[str, list[float]] = {name: [] for name in TRAINEES}
    for r in range(settings.train_rounds):
        for name in common.rotated(list(TRAINEES), r):
            for _ in range(settings.train_steps):
                start = time.process_time()
                times[name].append(common.timed(runners[name].step, torch.device("cpu")))
                cpu[name].append(time.process_time() - start)
        log(f"  training round {r + 1}/{settings.train_rounds} done")
    for name in TRAINEES:
        summary = common.summarize(times[name])
        results[name].update(step=summary, images_per_s=settings.train_batch / summary["median_s"],
                             step_cpu_s=statistics.median(cpu[name]), times_s=times[name], cpu_times_s=cpu[name])
    results["speedup"] = results[TRAINEES[0]]["images_per_s"] / results[TRAINEES[1]]["images_per_s"]
    results["cpu_speedup"] = results[TRAINEES[1]]["step_cpu_s"] / results[TRAINEES[0]]["step_cpu_s"]
    return results


# -- report ------------------------------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    v = m["versions"]
    sliding = report["sliding"]
    policy = report.get("environment", {}).get("OMP_WAIT_POLICY")
    wait = f" (OMP_WAIT_POLICY={policy})" if policy else ""
    lines = [
        "### Sliding window, 3D (`python -m benchmarks.volumes`)",
        "",
        f"{s['volume']} volume {'x'.join(map(str, sliding['shape']))}, patch {s['patch']}^3, overlap {s['overlap']}, "
        f"Gaussian sigma 1/8, {s['sw_batch_size']} window(s) per forward, {s['num_labels']} classes, CPU fp32, "
        f"MONAI UNet channels {'-'.join(map(str, s['channels']))}; median of {s['repeats']} interleaved rounds. "
        f"Machine: {m['cpu']} ({m['cpu_count']} cores), {m['torch_threads']} threads{wait}, load average "
        f"{common.fmt(m['load_average_1min'], 2)} at start, {common.fmt(m.get('load_average_1min_end'), 2)} at the "
        f"end. torch {v['torch']}, monai {v['monai']}.",
        "",
    ]
    headers = ["model", "method", "windows", "median s", "iqr", "in the model s", "own s", "x speed", "CPU s",
               "x CPU", "peak MiB", "x mem"]
    rows = []
    for name in MODELS:
        r = sliding[name]
        for method in METHODS:
            row = r[method]
            peak, base = row.get("peak_mib"), r["monai"].get("peak_mib")
            rows.append([f"{'MONAI UNet' if name == 'unet' else '1x1x1 conv'}", method, row["windows"],
                         common.fmt(row["median_s"], 3), common.fmt(row["iqr_rel"], 2), common.fmt(row["model_s"], 3),
                         common.fmt(row["own_s"], 3), common.fmt(r["speedup"] if method == "hfseg" else 1.0, 2),
                         common.fmt(row["cpu_s"], 3), common.fmt(r["cpu_speedup"] if method == "hfseg" else 1.0, 2),
                         common.fmt(peak, 0), common.fmt(peak / base if peak is not None and base else None, 2)])
    lines.append(common.markdown_table(headers, rows))
    a = sliding["unet"]["agreement"]
    lines += ["", "in the model s: median time inside the network's forward passes; own s: median of the rest "
                  "(padding, gathering windows, weighting, stitching, dividing). x speed: the median over rounds of "
                  "MONAI's time over hfseg's in the same round (above 1: hfseg faster). CPU s: median process CPU time "
                  "of a call (both threads; with OMP_WAIT_POLICY=PASSIVE waiting threads sleep, so it is the work "
                  "done, and other processes taking the cores barely change it); x CPU: as x speed, on CPU time. "
                  "x mem: peak over MONAI's. "
                  f"Outputs (UNet): max |diff| {a['max_abs_diff']:.2e}, mean |diff| {a['mean_abs_diff']:.2e} "
                  f"(mean |logit| {a['logit_scale']:.2e}), argmax agreement {100 * a['argmax_agreement']:.3f}%."]
    if report.get("memory_method"):
        lines[-1] += f" Peak memory: {report['memory_method']}, one call after a warm-up, a fresh process each."
    train = report.get("training")
    if train is not None:
        lines += ["", "### Training, 3D attention U-Net", ""]
        if "skipped" in train:
            lines.append(f"Skipped: {train['skipped']}.")
        else:
            lines.append(f"Batch {s['train_batch']} x 1 x {s['train_patch']}^3, {s['num_labels']} classes, Adam, "
                         f"cross-entropy; {s['train_warmup']} warm-up step(s), then {s['train_rounds']} rounds x "
                         f"{s['train_steps']} steps, interleaved.")
            lines.append("")
            lines.append(common.markdown_table(
                ["model", "params (M)", "median step s", "iqr", "images/s", "x train", "CPU s per step", "x CPU"],
                [[f"`{name}`", common.fmt(train[name]["params_m"], 2), common.fmt(train[name]["step"]["median_s"], 3),
                  common.fmt(train[name]["step"]["iqr_rel"], 2), common.fmt(train[name]["images_per_s"], 2),
                  common.fmt(train["speedup"] if name == TRAINEES[0] else 1.0, 2),
                  common.fmt(train[name]["step_cpu_s"], 3),
                  common.fmt(train["cpu_speedup"] if name == TRAINEES[0] else 1.0, 2)] for name in TRAINEES]))
    return "\n".join(lines) + "\n"


def _probe_args(probe: str, settings: Settings) -> list[str]:
    args = [f"--probe={probe}"]
    for key, value in asdict(settings).items():
        if isinstance(value, list):
            args += [f"--{key}", *map(str, value)]
        elif value is not None:
            args += [f"--{key}", str(value)]
    return args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, value in asdict(Settings()).items():
        if isinstance(value, list):
            parser.add_argument(f"--{key}", type=int, nargs="+", default=value)
        else:
            parser.add_argument(f"--{key}", type=type(value) if value is not None else int, default=value)
    parser.add_argument("--no_memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--no_train", action="store_true", help="skip part (b), training")
    parser.add_argument("--output", default=str(common.RESULTS_DIR / "volumes.json"),
                        help="JSON path; the Markdown table is written next to it")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # internal: one memory probe
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = Settings(**{k: getattr(args, k) for k in asdict(Settings())})
    if len(settings.shape) != 3:
        raise SystemExit(f"--shape takes 3 sizes, got {settings.shape}.")
    device = common.setup_torch(settings.threads, "cpu")
    if args.probe:
        model, method = args.probe.split(":")
        print(json.dumps(probe_memory(model, method, settings)))
        return {}
    machine = common.machine_info(device)
    print(f"volumes benchmark on {machine['cpu']} ({machine['torch_threads']} threads)")
    report: dict[str, Any] = {"benchmark": "volumes", "settings": asdict(settings), "machine": machine,
                              "environment": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}}
    report["sliding"] = measure_sliding(settings)
    if not args.no_memory:
        for model, methods in measure_memory(settings).items():
            for method, found in methods.items():
                report["sliding"][model][method].update(found)
                report["memory_method"] = found.get("method", report.get("memory_method"))
    if not args.no_train:
        report["training"] = measure_training(settings)
    report["machine"]["load_average_1min_end"] = common.machine_info(device)["load_average_1min"]
    common.write_report(Path(args.output), report, markdown(report))
    return report


if __name__ == "__main__":
    main()
