"""Helpers shared by the end-to-end tests (Dagster definitions, the CLI, the crash test).

Everything runs on copies in a temporary directory; the environment handed to subprocesses is built
from scratch for the knobs this package reads, so a developer's own settings cannot leak in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: fast engine knobs: tiny poll intervals and backoffs, no submission pacing to speak of
FAST_ENGINE = {
    "WAN_PIPELINE_POLL_INITIAL_S": "0.1",
    "WAN_PIPELINE_POLL_MAX_S": "0.2",
    "WAN_PIPELINE_BACKOFF_BASE_S": "0.02",
    "WAN_PIPELINE_BACKOFF_MAX_S": "0.2",
    "WAN_PIPELINE_SUBMITS_PER_SECOND": "200",
    "WAN_PIPELINE_MAX_CONCURRENCY": "8",
}
#: the in-process emulator: no queue, a short "render"
FAST_EMULATOR = json.dumps({"queue_s": 0, "process_s": 0.05})

_OWN_PREFIXES = ("WAN_PIPELINE_", "RIVYA_", "EVOLINK_", "REAPI_", "RUNWARE_", "DASHSCOPE_", "DAGSTER_")


def clean_environ() -> dict[str, str]:
    """os.environ without anything this package (or Dagster) reads, so only the test decides."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}


def cli_env(dagster_home: Path, pycache: Path | None = None, **extra: str) -> dict[str, str]:
    env = clean_environ()
    env.update(FAST_ENGINE)
    env["WAN_PIPELINE_EMULATOR"] = FAST_EMULATOR
    env["DAGSTER_HOME"] = str(dagster_home)
    env["PYTHONUNBUFFERED"] = "1"
    if pycache is not None:
        # Each CLI run imports Dagster afresh; cached bytecode (kept out of the source tree) halves that.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(extra)
    return env


def pycache_dir(factory: Any) -> Path:
    """Where CLI subprocesses keep compiled bytecode: beside pytest's own numbered temp dirs (so it
    survives between sessions, outside the source tree), or inside an explicit --basetemp."""
    base = Path(factory.getbasetemp())
    explicit = getattr(factory, "_given_basetemp", None) is not None  # --basetemp dirs are wiped per run
    return (base if explicit else base.parent) / "wan_pipeline_pycache"


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "wan_pipeline.cli", *args]


def run_cli(*args: str, env: Mapping[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_cmd(*args), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


def copy_examples(dest: Path) -> Path:
    """A copy of examples/ under dest; returns the copied demo.yaml (storage lands in dest/wan_output/demo)."""
    shutil.copytree(EXAMPLES, dest / "examples")
    return dest / "examples" / "demo.yaml"


def storage_root(spec_path: Path) -> Path:
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    return (spec_path.parent / spec["storage"]).resolve()


def read_lineage(spec_path: Path) -> Any:
    return pq.read_table(storage_root(spec_path) / "lineage" / "lineage.parquet").to_pandas()


def sha256_file(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def media_files(spec_path: Path) -> list[Path]:
    """Every finished media file (atomic writes leave no partial files under final names)."""
    root = storage_root(spec_path) / "media"
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


def emulator_state_file(spec_path: Path) -> Path:
    return storage_root(spec_path) / "_state" / "emulator_state.json"


def read_emulator_state(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


# -- an emulator on a port --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str, body: Any | None = None, timeout: float = 5) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class EmulatorProcess:
    """`wan-pipeline emulator` in its own session (process group), stopped in `stop()`."""

    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc
        self.base_url = f"http://127.0.0.1:{port}"

    def report(self) -> dict[str, Any]:
        return dict(http_json(self.base_url + "/_emulator/report"))

    def faults(self, config: dict[str, Any]) -> None:
        http_json(self.base_url + "/_emulator/faults", config)

    def config(self, config: dict[str, Any]) -> None:
        http_json(self.base_url + "/_emulator/config", config)

    def stop(self) -> None:
        stop_group(self.proc)


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group started with start_new_session=True, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def emulator_process(*args: str, env: Mapping[str, str], cwd: Path, log: Path) -> Iterator[EmulatorProcess]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(cli_cmd("emulator", "--port", str(port), *args), env=dict(env), cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    emu = EmulatorProcess(port, proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                emu.report()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"emulator exited early:\n{log.read_text(errors='replace')}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError("emulator did not answer within 30 s") from None
                time.sleep(0.05)
        yield emu
    finally:
        emu.stop()
