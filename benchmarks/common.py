"""Shared pieces of the benchmarks: threads and devices, timing, memory high-water marks, FLOPs, machine facts, output.

Peak memory, the method:
- **CUDA**: `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`, minus the memory allocated at
  that point (model, optimizer state, input).
- **CPU**: the process's resident set high-water mark (`VmHWM` in `/proc/self/status`), reset to the current RSS by
  writing `5` to `/proc/self/clear_refs` (Linux >= 4.0), minus the RSS at the reset. PyTorch's CPU allocator has no
  peak counter, and glibc would keep freed blocks resident, hiding the next step's allocations from the RSS; so the
  probe runs in a fresh process started with `MALLOC_MMAP_THRESHOLD_` at 64 KiB: every tensor buffer is then its own
  mapping, returned to the system when freed, and the RSS follows the live tensors. Where `clear_refs` cannot be
  written, the fallback is `ru_maxrss` minus the RSS before the first step (recorded as `method` in the results).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# glibc: serve every allocation >= 64 KiB by mmap and give it back on free (see the module docstring).
MEMORY_PROBE_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
PACKAGES = ("torch", "torchvision", "transformers", "timm", "monai", "segmentation-models-pytorch", "hfseg")


# -- devices and precision ---------------------------------------------------------------------------------------
def setup_torch(threads: int | None, device: str) -> torch.device:
    """Set the intra-op thread count (before any parallel work) and check the device exists."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was given but torch sees no CUDA device; run on a GPU machine or use "
                           "--device cpu.")
    return dev


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), which oneDNN uses under autocast."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `bf16`, else a no-op context."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# -- models ------------------------------------------------------------------------------------------------------
def logits_of(output: Any) -> torch.Tensor:
    """The logits tensor of a model output (`.logits`) or the tensor itself."""
    return output if isinstance(output, torch.Tensor) else output.logits


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_gflops(model: nn.Module, pixel_values: torch.Tensor) -> float:
    """GFLOPs of one forward pass in eval mode, counted by `torch.utils.flop_counter.FlopCounterMode` (convolutions
    and matrix products, 2 FLOPs per multiply-add; elementwise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixel_values=pixel_values)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


# -- timing ------------------------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of `fn` takes, the device synchronized before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median, minimum and interquartile spread (as a fraction of the median) of a list of durations."""
    values = sorted(seconds)
    quartiles = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    median = statistics.median(values)
    return {"median_s": median, "min_s": values[0], "iqr_rel": (quartiles[2] - quartiles[0]) / median,
            "n": len(values)}


def rotated(items: Sequence[Any], k: int) -> list[Any]:
    """`items` started at index `k` (modulo its length): the order of each interleaved round."""
    k %= max(len(items), 1)
    return list(items[k:]) + list(items[:k])


# -- memory ------------------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of a block of work over what was in use when it started, in MiB (see the module docstring).

    ```python
    with PeakMemory(device) as peak:
        step()
    peak.mib, peak.method
    ```
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib: float | None = None
        self.method = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        self._base = _status_kib("VmRSS") or 0
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM reset by clear_refs"
        except OSError:
            self.method = "ru_maxrss"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
            return
        if self.method.startswith("VmHWM"):
            peak = _status_kib("VmHWM") or 0
        else:  # kibibytes on Linux
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.mib = max(peak - self._base, 0) / 1024


def run_probe(module: str, args: Sequence[str], timeout: float = 1800) -> dict[str, Any]:
    """Run `python -m module args` in a fresh process with the memory-probe environment; its last stdout line is a
    JSON object, returned."""
    env = {**os.environ, **MEMORY_PROBE_ENV}
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=root, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"Memory probe `{module} {' '.join(args)}` failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- machine and versions ----------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, threads, bf16 support, GPU, load, versions."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": cpu_supports_bf16(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": versions(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# -- output ------------------------------------------------------------------------------------------------------
def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def write_report(output: Path, report: Mapping[str, Any], markdown: str) -> None:
    """`report` as JSON at `output` and `markdown` next to it (`.md`), printed too."""
    write_json(output, report)
    output.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"Wrote {output} and {output.with_suffix('.md')}")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; floats keep the formatting the caller gave them (pass strings)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


@contextlib.contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as elapsed: ...; elapsed()` in seconds."""
    start = time.perf_counter()
    yield lambda: time.perf_counter() - start
