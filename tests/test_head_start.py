"""`generate`'s head start (`cli.head_start`): the first wave is sent before Dagster loads, and the first range
run takes it over — each output bought once, every partition materialized by a run, the attempts recorded
under that run's id — also when the process is killed while only the head start has sent anything.

Against the DashScope emulator in its own process (no idempotency keys: the harder case). Nothing is timed: the
order is read from the ledger's and the instance's own timestamps.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from conftest import write_dataset
from e2e_helpers import EmulatorProcess, cli_env, emulator_process, pycache_dir, run_cli

from wan_pipeline.assets.dagster_compat import PARTITION_RANGE_START_TAG
from wan_pipeline.assets.dataset import generate_job_name, prompt_table_job_name
from wan_pipeline.assets.keys import key
from wan_pipeline.execution.settings import EngineSettings, configured_in_env, settings_for_host, settings_from_env
from wan_pipeline.outputs.lineage import LINEAGE_PATH
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.registry import get_provider
from wan_pipeline.resources.provider import ProviderResource, provider_resource_from_env

API_KEY = "sk-head-start-0123"
CONCURRENCY = 8
ROWS = 30


def _dataset(tmp_path: Path) -> Path:
    rows = [{"prompt_id": f"h{i:03d}", "prompt": f"A tide pool, study {i}"} for i in range(ROWS)]
    return write_dataset(tmp_path / "data", rows, table="prompts.csv", spec_file="spec.yaml", name="heads",
                         provider="dashscope", model="wan2.7-image", seed=4, params={"resolution": "1K"},
                         storage="./out")  # fmt: skip


@contextlib.contextmanager
def _host(
    tmp_path: Path, factory: pytest.TempPathFactory, process_s: float
) -> Iterator[tuple[EmulatorProcess, dict[str, str]]]:
    """The DashScope emulator in its own process (tasks of `process_s`, tiny media), and `generate`'s env."""
    with emulator_process("--api-key", API_KEY, "--root-provider", "dashscope", "--queue-s", "0", "--process-s",
                          str(process_s), env=os.environ, cwd=tmp_path, log=tmp_path / "emulator.log") as emu:
        emu.config({"media_max_side": 32})
        env = cli_env(tmp_path / "dagster_home", pycache_dir(factory), WAN_PIPELINE_STATE_DIR=str(tmp_path / "state"))
        env.update(DASHSCOPE_BASE_URL=emu.base_url, DASHSCOPE_API_KEY=API_KEY,
                   WAN_PIPELINE_MAX_CONCURRENCY=str(CONCURRENCY), WAN_PIPELINE_SUBMITS_PER_SECOND="1000")
        yield emu, env


def _ledger(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "state" / "heads" / "ledger.sqlite")


def _when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_the_first_wave_leaves_before_dagster_and_the_first_run_takes_it_over(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with _host(tmp_path, tmp_path_factory, 0.5) as (emu, env):
        spec_path = _dataset(tmp_path)
        done = run_cli("generate", str(spec_path), env=env, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        report = emu.report()
    assert report["tasks_created"] == ROWS == report["submit_requests"]  # each output bought once
    assert f"new submissions:  {ROWS}" in done.stdout  # counted from before the head start
    spec = load_spec(spec_path)
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        assert set(instance.get_materialized_partitions(key(spec, "media"))) == {f"h{i:03d}" for i in range(ROWS)}
        table_run = instance.get_runs(dg.RunsFilter(job_name=prompt_table_job_name(spec)))[0]
        table_created = instance.get_run_record_by_id(table_run.run_id).create_timestamp.timestamp()  # type: ignore[union-attr]
        runs = instance.get_runs(dg.RunsFilter(job_name=generate_job_name(spec)))
        first_run = next(r for r in runs if r.tags.get(PARTITION_RANGE_START_TAG) == "h000")
    with _ledger(tmp_path) as db:
        rows = db.execute("SELECT sent_at, prompt_id, run_id FROM attempts").fetchall()
    sent = sorted((_when(s), pid, run) for s, pid, run in rows)
    head = sent[:CONCURRENCY]
    assert {pid for _, pid, _ in head} == {f"h{i:03d}" for i in range(CONCURRENCY)}  # the first partitions
    assert all(when < table_created for when, _, _ in head)  # sent before Dagster's first run existed
    assert {run for _, _, run in head} == {first_run.run_id}  # recorded under the run that took them over
    lineage = pq.read_table(io.BytesIO((tmp_path / "data" / "out" / LINEAGE_PATH).read_bytes())).to_pylist()
    assert {r["run_id"] for r in lineage if r["prompt_id"] in {pid for _, pid, _ in head}} == {first_run.run_id}


def test_killed_while_only_the_head_start_has_sent_the_next_run_buys_nothing_twice(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with _host(tmp_path, tmp_path_factory, 3) as (emu, env):
        spec_path = _dataset(tmp_path)
        proc = subprocess.Popen([sys.executable, "-m", "wan_pipeline.cli", "generate", str(spec_path)], env=env,
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while emu.report()["tasks_created"] < CONCURRENCY and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # the tasks take 3 s: nothing is stored, no run has sent anything
        proc.wait(30)
        assert emu.report()["tasks_created"] == CONCURRENCY
        done = run_cli("generate", str(spec_path), env=env, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        report = emu.report()
    assert report["tasks_created"] == ROWS == report["submit_requests"]  # the head start's tasks were polled
    assert "outputs stored:   30/30" in done.stdout


@pytest.mark.parametrize("provider", ["dashscope", "rivya", "evolink", "reapi", "runware"])
@pytest.mark.parametrize(
    "env",
    [{}, {"WAN_PIPELINE_MAX_CONCURRENCY": "64", "WAN_PIPELINE_POLL_INITIAL_S": "0.2"},
     {"WAN_PIPELINE_SUBMITS_PER_SECOND": "9.5", "WAN_PIPELINE_RESUBMIT_AMBIGUOUS": "yes",
      "WAN_PIPELINE_HTTP_RETRIES": "2"}],
)  # fmt: skip
def test_the_head_start_has_the_settings_the_runs_resource_gives(
    provider: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head start and the runs share the account's limits (leases count against `max_concurrency`), so
    they must agree; the head start reads them without Dagster."""
    for name in list(os.environ):
        if name.startswith("WAN_PIPELINE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert settings_from_env(provider) == provider_resource_from_env().settings(provider)
    assert settings_for_host(provider, configured_in_env(env)) == settings_from_env(provider)


@pytest.mark.parametrize("provider", ["dashscope", "runware"])
def test_a_limit_of_zero_means_the_host_s_own(provider: str) -> None:
    """As `ProviderResource` always read them: 0 concurrency would deadlock, a rate of 0 would mean no cap."""
    zero = {"WAN_PIPELINE_MAX_CONCURRENCY": "0", "WAN_PIPELINE_SUBMITS_PER_SECOND": "0"}
    host = get_provider(provider).default_limits
    got = settings_from_env(provider, zero)
    assert (got.max_concurrency, got.submits_per_second) == (host.max_concurrency, host.submits_per_second)
    resource = ProviderResource(max_concurrency=0, submits_per_second=0).settings(provider)
    assert (resource.max_concurrency, resource.submits_per_second) == (host.max_concurrency, host.submits_per_second)


def test_the_resource_fields_are_the_deployment_fields() -> None:
    from wan_pipeline.execution.settings import DEPLOYMENT_FIELDS

    assert set(ProviderResource.model_fields) == set(DEPLOYMENT_FIELDS)
    defaults = EngineSettings()
    resource = ProviderResource()
    for name in DEPLOYMENT_FIELDS:
        if name not in ("max_concurrency", "submits_per_second"):  # None: the host's, from the catalog
            assert getattr(resource, name) == getattr(defaults, name), name


def test_on_an_instance_you_configured_nothing_is_bought_before_it_loads(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No head start on a dagster.yaml the user wrote: when it does not load, nothing has been bought."""
    with _host(tmp_path, tmp_path_factory, 0.5) as (emu, env):
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("run_storage:\n  module: no_such_module\n  class: Nowhere\n", "utf-8")
        done = run_cli("generate", str(_dataset(tmp_path)), env=env, cwd=tmp_path, timeout=600)
        report = emu.report()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"the Dagster instance in {home} did not load (CheckError); check its dagster.yaml" in done.stderr
    assert report["tasks_created"] == 0 == report["submit_requests"]



def test_ctrl_c_while_tasks_wait_on_the_host_ends_generate_and_leaves_them_recorded(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An interrupt does not wait for tasks at the host (a video's take minutes), the head start's nor the
    range run's: `generate` ends as if killed, and each task it bought is recorded with its id for the next
    run to poll (`test_crash_resume` covers that next run)."""
    with _host(tmp_path, tmp_path_factory, 600) as (emu, env):
        err = tmp_path / "generate.err"
        with err.open("wb") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "wan_pipeline.cli", "generate", str(_dataset(tmp_path))],
                                    env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=sink)  # fmt: skip
        deadline = time.monotonic() + 60
        while "run(s) of at most" not in err.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.05)  # the head start has sent its wave; the range run is going
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)  # the tasks take ten minutes: it did not wait for them
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        created = emu.report()["tasks_created"]
    text = err.read_text(errors="replace")
    assert proc.returncode == 1 and "aborted" in text and "Traceback" not in text, text
    with _ledger(tmp_path) as db:
        ids = [task_id for (task_id,) in db.execute("SELECT task_id FROM attempts WHERE task_id IS NOT NULL")]
    assert len(ids) == created >= CONCURRENCY  # every task bought is recorded with its id
