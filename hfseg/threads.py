"""CPU threads: use the cores this process may run on, shared among the local processes, unless the user chose.

`accelerate launch` without a config sets `OMP_NUM_THREADS=1` in every process it starts (its default for
`--num_cpu_threads_per_process` when the run is not marked CPU-only), which leaves a CPU run on one core. That
value is not the user's choice, so it is detected and replaced: a value the user exported before launching,
`--num_cpu_threads_per_process` given to `accelerate launch`, or a `torch.set_num_threads` call made after hfseg
was imported, is kept.

    from hfseg.threads import configure_threads
    configure_threads()        # in an entry point: the recipe, `hfseg predict`, the Space
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Variables `accelerate launch` sets in the processes it starts (any one marks such a process).
ACCELERATE_MARKERS = ("ACCELERATE_DYNAMO_BACKEND", "ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU")
_AT_IMPORT = torch.get_num_threads()


@dataclass(frozen=True)
class ThreadChoice:
    """What `configure_threads` decided.

    Args:
        threads (`int`): torch's intra-op threads now.
        source (`str`): `"user"` (kept: the user's `OMP_NUM_THREADS`, accelerate flag or `torch.set_num_threads`)
            or `"cores"` (the available cores divided among the local processes).
        cores (`int`): cores this process may run on (`os.sched_getaffinity`).
        local_processes (`int`): processes of this run on this machine.
    """

    threads: int
    source: str
    cores: int
    local_processes: int


def cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """CPUs allowed by a cgroup CPU quota (`docker --cpus`, Kubernetes limits, hosted Spaces), rounded up, or None
    when there is no quota: cgroup v2 `cpu.max` ("200000 100000"), else v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or not quota.lstrip("-").isdigit() or not period.isdigit() or int(period) <= 0:
        return None
    return max(math.ceil(int(quota) / int(period)), 1)


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (taskset, cgroup cpusets), else `os.cpu_count()`, capped by a
    cgroup CPU quota (`cpu_quota`)."""
    try:
        cores = max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        cores = max(os.cpu_count() or 1, 1)
    quota = cpu_quota()
    return min(cores, quota) if quota else cores


def local_processes() -> int:
    """Processes of this run on this machine (`LOCAL_WORLD_SIZE` of torchrun / accelerate, else 1)."""
    for name in ("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def _launcher_environment() -> tuple[dict[str, str], list[str]] | None:
    """The environment and command line of the process that started this one (the `accelerate launch` process, or
    torchrun's agent inside it), or None when they cannot be read."""
    try:
        import psutil

        parent = psutil.Process(os.getppid())
        return parent.environ(), parent.cmdline()
    except Exception:  # psutil missing, no permission, platform without environ()
        return None


def _accelerate_default() -> bool:
    """True when `OMP_NUM_THREADS` was put there by `accelerate launch`'s default, not by the user."""
    if not any(name in os.environ for name in ACCELERATE_MARKERS):
        return False  # not started by accelerate launch: whoever set it meant it
    launcher = _launcher_environment()
    if launcher is None:
        # Cannot see the launcher: accelerate's unconfigured default is exactly 1.
        return os.environ.get("OMP_NUM_THREADS", "").strip() == "1"
    environ, cmdline = launcher
    flagged = any(arg.startswith("--num_cpu_threads_per_process") for arg in cmdline)
    return not flagged and "OMP_NUM_THREADS" not in environ


def user_threads() -> int | None:
    """The thread count the user chose, or None when the choice is hfseg's to make.

    A choice is `OMP_NUM_THREADS` / `MKL_NUM_THREADS` in the environment (unless `accelerate launch` put it there
    by default) or a `torch.set_num_threads` call after `import hfseg`.
    """
    if torch.get_num_threads() != _AT_IMPORT:
        return torch.get_num_threads()
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            if name == "OMP_NUM_THREADS" and _accelerate_default():
                continue
            return int(value)
    return None


def configure_threads(processes: int | None = None) -> ThreadChoice:
    """Set torch's CPU threads to the available cores divided among `processes` (default: the local processes of
    this run), unless the user chose a count (`user_threads`); returns what was decided."""
    global _AT_IMPORT
    cores = available_cores()
    local = processes or local_processes()
    chosen = user_threads()
    if chosen is not None:
        choice = ThreadChoice(torch.get_num_threads(), "user", cores, local)
    else:
        threads = max(cores // max(local, 1), 1)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        _AT_IMPORT = torch.get_num_threads()  # our own setting is not a user's choice on the next call
        choice = ThreadChoice(threads, "cores", cores, local)
    logger.info("CPU threads: %d (%s; %d cores, %d local processes)", choice.threads, choice.source, cores, local)
    return choice
