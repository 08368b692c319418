"""Load test of the Space: concurrent visitors (gradio_client sessions) sending the examples and a 4 MB DICOM.

    python spaces/load_test.py                                   # 16 sessions for 120 s, server on a free port
    python spaces/load_test.py --sessions 16 --seconds 300 --max-queue 16 --out spaces/load_test.json
    python spaces/load_test.py --url http://127.0.0.1:7860/      # a Space already running (its default model)

It starts `spaces/app.py` in a subprocess (the bundled model, `HFSEG_MAX_QUEUE=--max-queue`), makes a ~4 MB CT DICOM
(pydicom's `CT_small.dcm` tiled 11 x 11: 1408 x 1408, 16 bit) in a temporary folder, and runs `--sessions`
concurrent `gradio_client.Client`s, each sending the bundled examples and the DICOM in turn, for `--seconds` (a
request started in time is finished) or `--requests` each. Every request ends as: `answered` (the segmentation),
`message` (a status that starts with a warning sign: a file the app refused, said in the page), `queue_full`
(Gradio's queue refused it, `QueueError`; the session waits `--retry-after` seconds), or `error` (anything else:
what must never happen). Then one more request checks the server still answers. It prints and writes (`--out`,
JSON) the counts, the p50 / p95 latency of the answered requests (all, and per file), the server's resident memory at
start and its peak (`VmHWM`), the load average before and after, and the machine and versions. Exit code 1 when any
request ended in an error or the server no longer answers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
AUTO_CLASS = "auto (largest predicted class)"  # hfseg.app.predict.AUTO_CLASS (not imported: no torch here)
OUTCOMES = ("answered", "message", "queue_full", "error")


@dataclass
class Result:
    """One request: session, file name, outcome (one of `OUTCOMES`), seconds, and the error or message."""

    session: int
    file: str
    outcome: str
    seconds: float
    detail: str = ""


def make_big_dicom(folder: str | os.PathLike, tiles: int = 11) -> Path:
    """pydicom's `CT_small.dcm` (128 x 128, 16 bit) tiled `tiles` x `tiles` times: about 4 MB for 11."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = np.tile(ds.pixel_array, (tiles, tiles))
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    path = Path(folder) / f"ct_{pixels.shape[0]}x{pixels.shape[1]}.dcm"
    ds.save_as(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_space(port: int, max_queue: int, timeout: float = 300.0) -> subprocess.Popen:
    """`python spaces/app.py` on `port` (its log in the parent's stderr), once it answers."""
    import httpx

    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HFSEG_MAX_QUEUE": str(max_queue),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, str(HERE / "app.py")], env=env, cwd=HERE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"spaces/app.py exited with code {server.returncode} before answering")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/gradio_api/info", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"spaces/app.py did not answer on port {port} within {timeout:.0f} s")


def rss_mb(pid: int, field: str = "VmHWM") -> float | None:
    """The process's peak (`VmHWM`) or current (`VmRSS`) resident memory (Linux), in MiB; None where /proc does
    not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def request(client: Any, model: str, file: str) -> tuple[str, str]:
    """(outcome, detail) of one `/segment` call."""
    from gradio_client import handle_file
    from gradio_client.utils import QueueError

    try:
        outputs = client.predict(model, handle_file(file), 0, AUTO_CLASS, "", api_name="/segment")
    except QueueError as err:
        return "queue_full", str(err)
    except Exception as err:  # noqa: BLE001 (what the load test is looking for)
        return "error", f"{type(err).__name__}: {err}"
    status = str(outputs[-1])
    return ("message", status) if status.startswith("⚠️") else ("answered", "")


def run_load(url: str, files: list[str], model: str, sessions: int = 16, requests: int | None = None,
             seconds: float | None = None, output_dir: str | None = None, retry_after: float = 2.0,
             results: list[Result] | None = None) -> list[Result]:
    """`sessions` concurrent clients, each sending `files` in turn (session `s` starts at file `s`), `requests`
    times or until `seconds` have passed (a started request is finished); a session told the queue is full waits
    `retry_after` seconds before its next request, as a visitor would. Results are appended to `results` (given: it
    can be watched while the load runs) as they come."""
    from gradio_client import Client

    if requests is None and seconds is None:
        raise ValueError("give requests (per session) or seconds")
    results = [] if results is None else results
    lock = threading.Lock()
    clients = [Client(url, verbose=False, download_files=output_dir or tempfile.gettempdir())
               for _ in range(sessions)]
    start = threading.Barrier(sessions)
    deadline: list[float] = []

    def session(index: int) -> None:
        start.wait()
        with lock:
            if not deadline:
                deadline.append(time.monotonic() + (seconds if seconds is not None else float("inf")))
        sent = 0
        while (requests is None or sent < requests) and time.monotonic() < deadline[0]:
            file = files[(index + sent) % len(files)]
            began = time.perf_counter()
            outcome, detail = request(clients[index], model, file)
            with lock:
                results.append(Result(index, Path(file).name, outcome, time.perf_counter() - began, detail))
            sent += 1
            if outcome == "queue_full":
                time.sleep(retry_after)

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    return results


def default_model(url: str) -> str:
    """The Space's default model (its dropdown's value), as its API describes `/segment`."""
    from gradio_client import Client

    info = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    return info["named_endpoints"]["/segment"]["parameters"][0]["parameter_default"]


def shown(model: str) -> str:
    """`model` as recorded: a folder inside the repository relative to its root, anything else as given."""
    path = Path(model)
    if path.is_absolute() and path.resolve().is_relative_to(HERE.parent):
        return str(path.resolve().relative_to(HERE.parent))
    return model


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def summarize(results: list[Result], **extra: Any) -> dict[str, Any]:
    """Counts per outcome, latency p50 / p95 of the answered requests (all and per file), the errors seen."""
    counts = Counter(r.outcome for r in results)
    answered = [r for r in results if r.outcome == "answered"]
    per_file = {}
    for name in sorted({r.file for r in results}):
        times = [r.seconds for r in answered if r.file == name]
        per_file[name] = {"answered": len(times), "p50_s": percentile(times, 50), "p95_s": percentile(times, 95)}
    errors = Counter(r.detail[:300] for r in results if r.outcome == "error")
    messages = Counter(r.detail[:300] for r in results if r.outcome == "message")
    return {"requests": len(results), **{k: counts.get(k, 0) for k in OUTCOMES},
            "p50_s": percentile([r.seconds for r in answered], 50),
            "p95_s": percentile([r.seconds for r in answered], 95),
            "queue_full_p95_s": percentile([r.seconds for r in results if r.outcome == "queue_full"], 95),
            "per_file": per_file, "errors": dict(errors.most_common(5)), "messages": dict(messages.most_common(5)),
            **extra}


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("hfseg", "gradio", "gradio_client", "torch"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
            "python": platform.python_version(), "versions": versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=16, help="concurrent gradio_client sessions (default 16)")
    parser.add_argument("--seconds", type=float, default=None, help="how long to send (default 120 s)")
    parser.add_argument("--requests", type=int, default=None, help="requests per session, instead of --seconds")
    parser.add_argument("--max-queue", type=int, default=16, help="HFSEG_MAX_QUEUE of the server (default 16)")
    parser.add_argument("--retry-after", type=float, default=2.0,
                        help="seconds a session told the queue is full waits before its next request (default 2)")
    parser.add_argument("--url", default=None, help="a Space already running (default: start spaces/app.py)")
    parser.add_argument("--model", default=None, help="the model to ask for (default: the Space's default model)")
    parser.add_argument("--out", default=str(HERE / "load_test.json"), help="results JSON (default "
                        "spaces/load_test.json)")
    args = parser.parse_args(argv)
    seconds = 120.0 if args.seconds is None and args.requests is None else args.seconds
    with tempfile.TemporaryDirectory() as folder:
        files = sorted(str(p) for p in EXAMPLES.iterdir() if p.suffix in (".png", ".dcm", ".gz"))
        files.append(str(make_big_dicom(folder)))
        port = free_port()
        server = None if args.url else start_space(port, args.max_queue)
        url = args.url or f"http://127.0.0.1:{port}/"
        try:
            model = args.model or default_model(url)
            idle_rss = None if server is None else rss_mb(server.pid, "VmRSS")
            load_before = os.getloadavg()
            began = time.perf_counter()
            results = run_load(url, files, model, args.sessions, args.requests, seconds,
                               output_dir=os.path.join(folder, "downloads"), retry_after=args.retry_after)
            wall = time.perf_counter() - began
            after, detail = request(connect(url, folder), model, files[0])
            summary = summarize(results, sessions=args.sessions, seconds=seconds, requests_per_session=args.requests,
                                model=shown(model), max_queue=None if args.url else args.max_queue,
                                retry_after_s=args.retry_after,
                                wall_s=round(wall, 1),
                                answered_per_minute=round(60 * sum(r.outcome == "answered" for r in results) / wall,
                                                          1),
                                answers_after=after == "answered", after_detail=detail,
                                server_rss_at_start_mb=idle_rss,
                                server_peak_rss_mb=None if server is None else rss_mb(server.pid),
                                load_average_before=[round(x, 2) for x in load_before],
                                load_average_after=[round(x, 2) for x in os.getloadavg()],
                                files={Path(f).name: Path(f).stat().st_size for f in files},
                                command=" ".join(["python", "spaces/load_test.py", *(argv or sys.argv[1:])]),
                                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **machine())
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
    Path(args.out).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(report(summary) + f"; written to {args.out}")
    for error, count in summary["errors"].items():
        print(f"  error x{count}: {error}")
    return 1 if summary["error"] or not summary["answers_after"] else 0


def report(summary: dict[str, Any]) -> str:
    """One line of a `summarize` result."""
    return (f"{summary['requests']} requests from {summary['sessions']} sessions in {summary['wall_s']} s: "
            f"{summary['answered']} answered, {summary['message']} messages, {summary['queue_full']} queue full, "
            f"{summary['error']} errors ({summary['answered_per_minute']} answers a minute); answered p50 "
            f"{summary['p50_s']} s, p95 {summary['p95_s']} s; server RSS {summary['server_rss_at_start_mb']} MiB at "
            f"start, peak {summary['server_peak_rss_mb']} MiB; load average {summary['load_average_before']} -> "
            f"{summary['load_average_after']}; answers afterwards: {summary['answers_after']}")


def connect(url: str, folder: str) -> Any:
    """A `gradio_client.Client` of `url`, downloading answers into `folder`/downloads."""
    from gradio_client import Client

    return Client(url, verbose=False, download_files=os.path.join(folder, "downloads"))


if __name__ == "__main__":
    sys.exit(main())
