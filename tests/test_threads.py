"""`hfseg.threads`: the user's thread choice is kept, `accelerate launch`'s unconfigured default is replaced by the
available cores divided among the local processes.

The in-process tests fake the cores and the launcher; the subprocess tests run the real `accelerate launch` on a tiny
script that prints what `configure_threads()` chose.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hfseg.threads as threads
from hfseg.threads import configure_threads

THREADS_PY = Path(threads.__file__)
ACCELERATE_MODULE = "accelerate.commands.launch"
ENVIRONMENT = (*threads.THREAD_VARIABLES, *threads.ACCELERATE_MARKERS, "LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS",
               "OMPI_COMM_WORLD_LOCAL_SIZE")
# Loads hfseg/threads.py by path (it needs only torch and psutil): the launched processes skip importing the models.
SCRIPT = f"""
import importlib.util, json, os, sys, torch
spec = importlib.util.spec_from_file_location("hfseg_threads", {str(THREADS_PY)!r})
threads = sys.modules["hfseg_threads"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(threads)
choice = threads.configure_threads()
line = json.dumps({{"threads": torch.get_num_threads(), "source": choice.source, "cores": choice.cores,
                   "local": choice.local_processes, "omp": os.environ.get("OMP_NUM_THREADS")}})
sys.stdout.write("CHOICE " + line + "\\n")  # one write: two processes' lines do not interleave
sys.stdout.flush()
"""


@pytest.fixture
def clean(monkeypatch):
    """No thread variables, launcher markers or local world size; torch's threads and the module's record of them
    restored afterwards."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    before, at_import = torch.get_num_threads(), threads._AT_IMPORT
    yield monkeypatch
    torch.set_num_threads(before)
    threads._AT_IMPORT = at_import


def test_cores_are_divided_among_the_local_processes(clean):
    clean.setattr(threads, "available_cores", lambda: 8)
    clean.setenv("LOCAL_WORLD_SIZE", "4")
    choice = configure_threads()
    assert (choice.threads, choice.source, choice.cores, choice.local_processes) == (2, "cores", 8, 4)
    assert torch.get_num_threads() == 2
    clean.setenv("LOCAL_WORLD_SIZE", "16")  # more processes than cores: one thread each, never zero
    assert configure_threads().threads == torch.get_num_threads() == 1
    clean.delenv("LOCAL_WORLD_SIZE")
    assert configure_threads(processes=2).threads == 4  # an explicit count wins over the environment


def test_a_second_call_is_not_taken_for_a_user_choice(clean):
    clean.setattr(threads, "available_cores", lambda: 2)
    configure_threads()
    clean.setattr(threads, "available_cores", lambda: 1)
    assert configure_threads().source == "cores"  # its own set_num_threads is not "the user's"


def test_user_omp_num_threads_is_kept(clean):
    clean.setattr(threads, "available_cores", lambda: 64)
    clean.setenv("OMP_NUM_THREADS", "1")  # no accelerate marker: whoever set it meant it
    before = torch.get_num_threads()
    choice = configure_threads()
    assert choice.source == "user" and torch.get_num_threads() == before


def test_set_num_threads_after_import_is_kept(clean):
    clean.setattr(threads, "available_cores", lambda: 64)
    chosen = threads._AT_IMPORT + 1
    torch.set_num_threads(chosen)
    choice = configure_threads()
    assert (choice.source, choice.threads, torch.get_num_threads()) == ("user", chosen, chosen)


@pytest.mark.parametrize(
    ("launcher", "source"),
    [
        (None, "cores"),  # launcher unreadable: accelerate's default is exactly 1
        (({}, ["accelerate", "launch", "train.py"]), "cores"),
        (({"OMP_NUM_THREADS": "1"}, ["accelerate", "launch", "train.py"]), "user"),  # exported before launching
        (({}, ["accelerate", "launch", "--num_cpu_threads_per_process", "1", "train.py"]), "user"),
        (({}, ["accelerate", "launch", "--num_cpu_threads_per_process=1", "train.py"]), "user"),
    ],
    ids=["unreadable", "default", "exported", "flag", "flag="],
)
def test_accelerate_default_is_told_from_the_user_choice(clean, launcher, source):
    clean.setattr(threads, "available_cores", lambda: 2)
    clean.setattr(threads, "_launcher_environment", lambda: launcher)
    clean.setenv("OMP_NUM_THREADS", "1")
    clean.setenv("ACCELERATE_MIXED_PRECISION", "no")  # a process started by accelerate launch
    assert configure_threads().source == source


def _launch(tmp_path, *launcher_args, processes=1, omp=None, accelerate=True):
    """Run SCRIPT under `accelerate launch` (or plain python); returns each process's choice."""
    script = tmp_path / "show_threads.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    env["HF_HOME"] = str(tmp_path / "hf")  # no accelerate config file of this machine
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    if accelerate:
        console = Path(sys.executable).parent / "accelerate"  # the command users run
        command = [str(console), "launch"] if console.is_file() else [sys.executable, "-m", ACCELERATE_MODULE]
        command += ["--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
                    "--dynamo_backend", "no", *(["--multi_gpu"] if processes > 1 else []), *launcher_args]
    else:
        command = [sys.executable]
    done = subprocess.run([*command, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    choices = [json.loads(line[len("CHOICE "):]) for line in done.stdout.splitlines() if line.startswith("CHOICE ")]
    assert len(choices) == processes, done.stdout + done.stderr[-3000:]
    return choices


def test_accelerate_launch_default_is_replaced_by_the_cores(tmp_path):
    (choice,) = _launch(tmp_path)
    assert choice["omp"] == "1"  # what accelerate launch put there
    assert choice["source"] == "cores" and choice["threads"] == choice["cores"] == threads.available_cores()


def test_accelerate_launch_keeps_an_exported_omp_num_threads(tmp_path):
    (choice,) = _launch(tmp_path, omp="1")
    assert (choice["source"], choice["threads"]) == ("user", 1)


def test_accelerate_launch_keeps_num_cpu_threads_per_process(tmp_path):
    (choice,) = _launch(tmp_path, "--num_cpu_threads_per_process", "1")
    assert (choice["omp"], choice["source"], choice["threads"]) == ("1", "user", 1)


def test_two_local_processes_share_the_cores(tmp_path):
    choices = _launch(tmp_path, processes=2)
    cores = threads.available_cores()
    for choice in choices:
        assert choice["local"] == 2 and choice["source"] == "cores" and choice["threads"] == max(cores // 2, 1)


def test_without_accelerate_omp_num_threads_is_the_user_choice(tmp_path):
    (choice,) = _launch(tmp_path, omp="1", accelerate=False)
    assert (choice["source"], choice["threads"]) == ("user", 1)


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: 1.5 CPUs, rounded up
    ({"cpu.max": "max 100000\n"}, None),  # no quota
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_cgroup_cpu_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert threads.cpu_quota(tmp_path) == expected


def test_a_cpu_quota_caps_the_cores(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(threads, "cpu_quota", lambda: 2)
    assert threads.available_cores() == 2
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)
    assert threads.available_cores() == 8
