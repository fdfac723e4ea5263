"""Generation at scale (issue 7): efficiency against the provider-bound ideal, and against the official SDK.

The physical limit is the provider: N tasks of latency L at concurrency C need ceil(N/C)·L seconds. The emulator
runs in its own process on 127.0.0.1 (`wan-pipeline emulator`), so its CPU is not counted against us, and renders
tiny media (`media_max_side`) so that the server's rendering does not count either.

  (a) engine   plan + TaskEngine.run in this process, no Dagster
  (b) generate `wan-pipeline generate` end to end (Dagster, ledger, lineage), a fresh process
  (c) sdk      Alibaba's `dashscope` SDK scripted as its users do (`sdk_peer.py`: thread pool, async_call +
               wait, download, write, SHA-256) and `generate` at the same concurrency, in one run
  (d) first    planning, and time from `generate` starting to the first create the host receives, at 100k rows
  (e) rss      peak RSS of `generate` at N outputs
  (f) ui       a backfill of every partition launched as the Dagster UI launches it (GraphQL
               launchPartitionBackfill) and run by the daemon `wan-pipeline ui` starts (`wan-pipeline daemon`) on
               the instance the CLI uses, and `generate`
               at the same N and C, in one run: per-output throughput ratio ui/cli

Run: .venv/bin/python benchmarks/bench_scale.py engine generate sdk first rss ui  (see --help for sizes)
Results go to benchmarks/RESULTS.md with the command that made them. Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench"
MODEL = "wan2.7-image"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(url: str, body: dict[str, Any] | None = None) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with opener.open(req, timeout=60) as resp:
        return json.loads(resp.read())


class Emulator:
    """`wan-pipeline emulator` in its own process, DashScope at the root, tiny media."""

    def __init__(self, latency_s: float) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wan_pipeline.cli", "emulator", "--port", str(self.port),
             "--root-provider", "dashscope", "--queue-s", "0", "--process-s", str(latency_s), "--credits", "1e12"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                self.report()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("emulator did not start") from None
                time.sleep(0.1)
        _http(f"{self.base}/_emulator/config", {"media_max_side": 32})

    def report(self) -> dict[str, Any]:
        return dict(_http(f"{self.base}/_emulator/report"))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_dataset(root: Path, rows: int, name: str = "bench") -> Path:
    with (root / "prompts.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt_id", "prompt"])
        for i in range(rows):
            w.writerow([f"p{i:06d}", f"A study of light number {i}, film grain"])
    spec = {
        "name": name, "prompts": "prompts.csv", "provider": "dashscope", "model": MODEL, "variants": 1,
        "seed": 1, "params": {"resolution": "1K", "aspect_ratio": "1:1"}, "storage": str(root / "out"),
    }  # fmt: skip
    (root / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return root / "spec.yaml"


def _env(emu: Emulator, tmp: Path, concurrency: int) -> dict[str, str]:
    return {
        **os.environ,
        "DASHSCOPE_BASE_URL": emu.base,
        "DASHSCOPE_API_KEY": KEY,
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "WAN_PIPELINE_STATE_DIR": str(tmp / "state"),
        "WAN_PIPELINE_MAX_CONCURRENCY": str(concurrency),
        "WAN_PIPELINE_SUBMITS_PER_SECOND": "1000",  # the SDK script has no rate cap either
    }


def ideal(n: int, c: int, latency: float) -> float:
    return math.ceil(n / c) * latency


def bench_engine(n: int, c: int, latency: float) -> dict[str, Any]:
    from wan_pipeline.execution.session import open_session
    from wan_pipeline.execution.settings import EngineSettings
    from wan_pipeline.planning.plan import build_plan
    from wan_pipeline.planning.spec import load_spec

    with Emulator(latency) as emu, tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        os.environ.update(_env(emu, tmp, c))
        start = time.perf_counter()
        spec = load_spec(write_dataset(tmp, n))
        plan = build_plan(spec)
        settings = EngineSettings(max_concurrency=c, submits_per_second=1000)

        async def run() -> int:
            async with open_session(spec, settings) as s:
                outs = await s.engine.run(list(plan.tasks))
            return sum(o.status == "stored" for o in outs)

        stored = asyncio.run(run())
        wall = time.perf_counter() - start
        rep = emu.report()
    return _result("engine", n, c, latency, wall, stored, rep)


def _result(what: str, n: int, c: int, latency: float, wall: float, stored: int, rep: dict[str, Any]) -> dict[str, Any]:
    best = ideal(n, c, latency)
    return {
        "what": what, "n": n, "concurrency": c, "latency_s": latency, "wall_s": round(wall, 2),
        "ideal_s": best, "efficiency": round(best / wall, 3), "stored": stored,
        "tasks_created": rep.get("tasks_created"), "polls_per_task": _polls_per_task(rep, n),
    }  # fmt: skip


def _polls_per_task(rep: dict[str, Any], n: int) -> float | None:
    polls = rep.get("polls")
    return round(polls / n, 2) if isinstance(polls, int | float) and n else None


def run_generate(emu: Emulator, tmp: Path, n: int, c: int) -> tuple[float, int, int]:
    """`wan-pipeline generate` in a fresh process: wall seconds, exit code, peak RSS (KiB) of the children."""
    spec = write_dataset(tmp, n)
    cmd = [sys.executable, "-m", "wan_pipeline.cli", "generate", str(spec)]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=_env(emu, tmp, c), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
    return wall, done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def bench_generate(n: int, c: int, latency: float) -> dict[str, Any]:
    with Emulator(latency) as emu, tempfile.TemporaryDirectory() as tmp_:
        wall, code, _ = run_generate(emu, Path(tmp_), n, c)
        waves = wave_timeline(Path(tmp_), c, time.time())
        rep = emu.report()
    out = _result("generate", n, c, latency, wall, rep.get("tasks_created") or 0, rep)
    out["exit_code"] = code
    return {**out, **waves}


def wave_timeline(tmp: Path, c: int, exited_at: float) -> dict[str, float]:
    """From the ledger `generate` left (each attempt's `sent_at`, `updated_at`): the creates cut into waves of `c`
    in the order they left — the widest span of a full wave, the last wave's span, the mean time between the
    leading edges of waves after the first — and the seconds from the last write to the process's exit. A slot
    keeps its phase for the whole run, so how far a wave's creates drift apart is how much later its last ones
    end than they could (docs/performance.md)."""
    import sqlite3
    from datetime import datetime

    ledger = next((tmp / "state").rglob("ledger.sqlite"))
    with closing(sqlite3.connect(ledger)) as db:
        rows = db.execute("SELECT sent_at, updated_at FROM attempts WHERE sent_at IS NOT NULL").fetchall()
    sent = sorted(datetime.fromisoformat(s).timestamp() for s, _ in rows)
    last_write = max(datetime.fromisoformat(u).timestamp() for _, u in rows)
    waves = [sent[i : i + c] for i in range(0, len(sent), c)]
    full = [w[-1] - w[0] for w in waves if len(w) == c]
    leads = [w[0] for w in waves]
    return {
        "wave_span_max_s": round(max(full, default=0.0), 3), "last_wave_span_s": round(waves[-1][-1] - waves[-1][0], 3),
        "wave_cycle_s": round((leads[-1] - leads[1]) / (len(leads) - 2), 4) if len(leads) > 2 else 0.0,
        "exit_after_last_write_s": round(exited_at - last_write, 3),
    }  # fmt: skip


def sdk_script(base: str, n: int, workers: int, out_dir: Path) -> tuple[float, float]:
    """The SDK script (`sdk_peer.py`) as a user runs it, in its own process: (wall seconds from start to exit,
    seconds its thread pool took)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "sdk_peer.py"), base, str(n), str(workers), str(out_dir)]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    return wall, float(json.loads(done.stdout.strip().splitlines()[-1])["loop_s"])


def bench_sdk(n: int, workers: int, latency: float) -> dict[str, Any]:
    """Both as commands, each timed from process start to exit against its own fresh emulator."""
    with Emulator(latency) as emu, tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        (tmp / "sdk").mkdir()
        sdk_wall, sdk_loop = sdk_script(emu.base, n, workers, tmp / "sdk")
    with Emulator(latency) as emu, tempfile.TemporaryDirectory() as tmp_:
        ours_wall, code, _ = run_generate(emu, Path(tmp_), n, workers)
        waves = wave_timeline(Path(tmp_), workers, time.time())
    return {
        "what": "sdk-vs-generate", "n": n, "concurrency": workers, "latency_s": latency,
        "ideal_s": ideal(n, workers, latency), "sdk_wall_s": round(sdk_wall, 2), "sdk_loop_s": round(sdk_loop, 2),
        "generate_wall_s": round(ours_wall, 2), "sdk_efficiency": round(ideal(n, workers, latency) / sdk_wall, 3),
        "throughput_ratio": round(sdk_wall / ours_wall, 3), "exit_code": code, **waves,
    }  # fmt: skip


def bench_first(rows: int, latency: float) -> dict[str, Any]:
    from wan_pipeline.planning.plan import build_plan
    from wan_pipeline.planning.spec import load_spec

    with Emulator(latency) as emu, tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        spec_path = write_dataset(tmp, rows)
        start = time.perf_counter()
        build_plan(load_spec(spec_path))
        plan_s = time.perf_counter() - start
        cmd = [sys.executable, "-m", "wan_pipeline.cli", "generate", str(spec_path)]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(emu, tmp, 64), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        first = cpu = None
        while proc.poll() is None and time.perf_counter() - start < 600:
            if (emu.report().get("tasks_created") or 0) > 0:
                first, cpu = time.perf_counter() - start, _cpu_seconds(proc.pid)
                break
            time.sleep(0.05)
        _stop(proc)
    return {"what": "first-submission", "rows": rows, "plan_s": round(plan_s, 2),
            "first_submission_s": None if first is None else round(first, 2),
            # CPU the generate process had used by then: less sensitive than wall time to a shared, loaded box
            "first_submission_cpu_s": cpu}  # fmt: skip


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc), None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a `generate` the benchmark no longer needs: SIGTERM, then SIGKILL (a run in progress can outlast
    SIGTERM by the whole generation)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def bench_rss(n: int, latency: float) -> dict[str, Any]:
    with Emulator(latency) as emu, tempfile.TemporaryDirectory() as tmp_:
        wall, code, rss_kib = run_generate(emu, Path(tmp_), n, 64)
    return {"what": "peak-rss", "n": n, "wall_s": round(wall, 2), "exit_code": code,
            "peak_rss_mb": round(rss_kib / 1024, 1)}  # fmt: skip


# ---- (f) a UI backfill run by `wan-pipeline daemon`, against `generate` -------------------------------------------

#: what the UI's "Materialize selected partitions" sends (tests/test_dagster_daemon.py launches it the same way)
LAUNCH_BACKFILL = """
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


@contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """This process as the webserver `wan-pipeline ui` starts: its environment, restored afterwards."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 pointed at stderr: the code server the workspace context spawns inherits it and logs
    there, so stdout keeps one JSON line per benchmark."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _ui_env(emu: Emulator, tmp: Path, spec: Path, concurrency: int) -> dict[str, str]:
    """The CLI's instance (its dagster.yaml, pooled SQLite event log) and what `wan-pipeline ui SPEC` sets."""
    from wan_pipeline.assets.dagster_compat import EVENT_BATCH_SIZE

    env = _env(emu, tmp, concurrency)
    return {**env, "WAN_PIPELINE_SPECS": str(spec), "DAGSTER_EVENT_BATCH_SIZE": EVENT_BATCH_SIZE}


def _register_partitions(spec_path: Path) -> float:
    """The prompt_table job, in process, as `generate` runs it before its range runs: seconds taken."""
    import dagster as dg

    from wan_pipeline.assets.dataset import prompt_table_job_name
    from wan_pipeline.definitions import build_definitions
    from wan_pipeline.planning.spec import load_spec

    start = time.perf_counter()
    job = build_definitions([spec_path]).resolve_job_def(prompt_table_job_name(load_spec(spec_path)))
    if not job.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False).success:
        raise RuntimeError("prompt_table job failed")
    return time.perf_counter() - start


def _start_daemon(tmp: Path, workspace: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The daemon `wan-pipeline ui` starts (`wan-pipeline daemon`: Dagster's, whose backfill daemon looks for new
    backfills every second) in its own process group, logging to tmp/daemon.log; returns once its backfill
    and run-queue daemons have sent a heartbeat (a user's daemon is up before they click)."""
    import dagster as dg

    with (tmp / "daemon.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "wan_pipeline.cli", "daemon", "-w", str(workspace)], cwd=tmp,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    instance, deadline = dg.DagsterInstance.get(), time.monotonic() + 180
    while not {"BACKFILL", "QUEUED_RUN_COORDINATOR"} <= set(instance.get_daemon_heartbeats()):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError("wan-pipeline daemon did not start:\n" + _tail(tmp / "daemon.log"))
        time.sleep(0.5)
    return proc


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _launch_and_wait(workspace: Path, spec_path: Path, n: int, timeout: float) -> tuple[str, float, float, int]:
    """Launch the backfill through GraphQL as the UI does; the clock starts at launch and stops when every
    partition of the media asset is materialized. Returns backfill id, launch epoch, wall seconds, partitions
    materialized (fewer than n: the backfill failed or timed out)."""
    import dagster as dg
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    from wan_pipeline.assets.keys import key
    from wan_pipeline.planning.spec import load_spec

    spec, instance = load_spec(spec_path), dg.DagsterInstance.get()
    keys = [key(spec, "generations"), key(spec, "media")]
    partitions = instance.get_dynamic_partitions(spec.partitions_name)
    with _stdout_to_stderr(), WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as ctx:
        request = ctx.create_request_context()  # the code location is loaded before the click
        epoch, start = time.time(), time.perf_counter()
        result = execute_dagster_graphql(request, LAUNCH_BACKFILL, {"backfillParams": {
            "assetSelection": [{"path": k.path} for k in keys], "partitionNames": partitions}})  # fmt: skip
    answer = (result.data or {}).get("launchPartitionBackfill") or {}
    if answer.get("__typename") != "LaunchBackfillSuccess":
        raise RuntimeError(f"launchPartitionBackfill: {answer} {result.errors}")
    backfill_id, done = str(answer["backfillId"]), 0
    while time.perf_counter() - start < timeout:
        done = len(instance.get_materialized_partitions(keys[1]))
        backfill = instance.get_backfill(backfill_id)
        if done >= n or backfill is None or backfill.status not in (BulkActionStatus.REQUESTED,):
            break
        time.sleep(0.5)
    return backfill_id, epoch, time.perf_counter() - start, done


def _wait_runs_finished(backfill_id: str, timeout: float) -> None:
    import dagster as dg
    from dagster._core.storage.dagster_run import RunsFilter

    instance, deadline = dg.DagsterInstance.get(), time.monotonic() + timeout
    filters = RunsFilter(tags={"dagster/backfill": backfill_id})
    while time.monotonic() < deadline and not all(r.is_finished for r in instance.get_runs(filters=filters)):
        time.sleep(0.5)


def _run_timings(backfill_id: str, epoch: float) -> dict[str, Any]:
    """Where the UI path's time goes, from the instance's own records of the backfill's runs: launch → first
    run created (the backfill daemon's iteration), created → STARTING (the run queue's dequeue), STARTING →
    RUN_START (a new process: imports and loading the code location), RUN_START → end (the run itself)."""
    import dagster as dg
    from dagster._core.storage.dagster_run import RunsFilter

    instance = dg.DagsterInstance.get()
    records = instance.get_run_records(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
    if not records:
        return {"runs": 0}
    rows = [(r.create_timestamp.timestamp(), _event_time(instance, r.dagster_run.run_id), r.start_time, r.end_time)
            for r in records]  # fmt: skip
    spans = [(s, e) for _, _, s, e in rows if s is not None and e is not None]
    starting = [(c, st) for c, st, _, _ in rows if st is not None]
    started = [(st, s) for _, st, s, _ in rows if st is not None and s is not None]

    def mean(pairs: list[tuple[float, float]]) -> float | None:
        return round(sum(b - a for a, b in pairs) / len(pairs), 2) if pairs else None

    offsets = sorted([round(t - epoch, 1) if t is not None else None for t in (c, st, s, e)] for c, st, s, e in rows)
    return {"runs": len(records), "statuses": sorted({r.dagster_run.status.value for r in records}),
            "first_run_created_s": round(min(c for c, *_ in rows) - epoch, 2),
            "mean_queue_s": mean(starting), "mean_process_start_s": mean(started), "mean_run_s": mean(spans),
            "max_runs_at_once": max(sum(s <= t < e for s, e in spans) for t, _ in spans) if spans else 0,
            # per run, seconds after launch: created, STARTING, RUN_START, end (sorted by creation)
            "run_offsets_s": offsets}  # fmt: skip


def _event_time(instance: Any, run_id: str) -> float | None:
    """When the run launcher started the run's process (the RUN_STARTING event)."""
    from dagster import DagsterEventType

    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_STARTING).records
    return float(records[0].event_log_entry.timestamp) if records else None


def run_ui_backfill(emu: Emulator, tmp: Path, n: int, c: int, timeout: float) -> dict[str, Any]:
    """A UI backfill of every partition's generation assets, run by `wan-pipeline daemon` on the CLI's instance."""
    spec = write_dataset(tmp, n)
    env = _ui_env(emu, tmp, spec, c)
    workspace = tmp / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": "wan_pipeline.definitions", "working_directory": str(ROOT)}}]}), encoding="utf-8")  # fmt: skip
    with _environ(env):
        from wan_pipeline.cli.home import ensure_dagster_home

        ensure_dagster_home()
        table_s = _register_partitions(spec)
        daemon = _start_daemon(tmp, workspace, env)
        try:
            backfill_id, epoch, wall, done = _launch_and_wait(workspace, spec, n, timeout)
            _wait_runs_finished(backfill_id, 120)  # not timed: the runs' records are complete once they end
            timings = _run_timings(backfill_id, epoch)
        finally:
            _stop(daemon)
        if done < n:
            print(_tail(tmp / "daemon.log"), file=sys.stderr)
    return {"wall_s": wall, "materialized": done, "prompt_table_s": round(table_s, 2), **timings}


def bench_ui(n: int, c: int, latency: float, timeout: float) -> dict[str, Any]:
    with Emulator(latency) as emu, tempfile.TemporaryDirectory() as tmp_:
        cli_wall, code, _ = run_generate(emu, Path(tmp_), n, c)
        cli_created = emu.report().get("tasks_created")
    # a run process the daemon launched may still close its databases as the directory goes: not our error
    with Emulator(latency) as emu, tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp_:
        ui = run_ui_backfill(emu, Path(tmp_), n, c, timeout)
        rep = emu.report()
    # "stored": partitions of the media asset materialized (one output each: variants is 1)
    out = _result("ui-backfill", n, c, latency, ui.pop("wall_s"), ui.pop("materialized"), rep)
    # the wall from the first run's creation leaves out the backfill daemon's pickup (Dagster's daemon: up to its
    # 30 s interval; `wan-pipeline daemon`: its next look, within a second)
    after = out["wall_s"] - ui["first_run_created_s"] if "first_run_created_s" in ui else None
    if after:
        ui["wall_from_first_run_s"] = round(after, 2)
        ui["efficiency_from_first_run"] = round(ideal(n, c, latency) / after, 3)
    return {**out, **ui, "cli_wall_s": round(cli_wall, 2), "cli_exit_code": code, "cli_tasks_created": cli_created,
            "cli_efficiency": round(ideal(n, c, latency) / cli_wall, 3),
            # outputs per second through the UI over outputs per second through `generate`
            "throughput_ratio_ui_cli": round(cli_wall / out["wall_s"], 3)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("which", nargs="+", choices=["engine", "generate", "sdk", "first", "rss", "ui"])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=2.0)
    ap.add_argument("--sdk-n", type=int, default=2000)
    ap.add_argument("--sdk-workers", type=int, default=32)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rss-n", type=int, default=10_000)
    ap.add_argument("--ui-timeout", type=float, default=1800, help="seconds the UI backfill may take")
    args = ap.parse_args()
    for which in args.which:
        if which == "engine":
            res = bench_engine(args.n, args.concurrency, args.latency)
        elif which == "generate":
            res = bench_generate(args.n, args.concurrency, args.latency)
        elif which == "sdk":
            res = bench_sdk(args.sdk_n, args.sdk_workers, args.latency)
        elif which == "first":
            res = bench_first(args.rows, args.latency)
        elif which == "ui":
            res = bench_ui(args.n, args.concurrency, args.latency, args.ui_timeout)
        else:
            res = bench_rss(args.rss_n, args.latency)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
