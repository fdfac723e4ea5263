"""Shared helpers: golden fixtures, the one dataset writer, the one in-process emulator client, and the real
servers some tests need (PostgreSQL, SeaweedFS S3; started on 127.0.0.1, see servers.py).

- ``write_dataset(directory, rows, **spec_fields)`` writes a prompt table and a spec; ``write_spec`` is the same
  writer bound to ``tmp_path`` with a small valid default spec, ``e2e_env`` the environment an emulated dataset
  runs in (state under tmp_path, a fast emulator, no provider variables from the shell).
- ``state`` / ``client``: an emulator account and an httpx client speaking one provider's protocol to it
  in-process. A test module picks the protocol and key with ``pytestmark = pytest.mark.emulator(name, headers)``
  (default: rivya); ``emulator_client(state, name, headers)`` opens more clients on the same account.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import random
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image
from servers import PostgresCluster, ensure_bucket, postgres_cluster, seaweedfs

from wan_pipeline.emulator.app import IN_PROCESS_BASE, InProcessTransport, create_app, in_process
from wan_pipeline.emulator.faults import FaultConfig
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState
from wan_pipeline.execution.calls import Caller
from wan_pipeline.execution.journal import AsyncLedger, Journal
from wan_pipeline.execution.pacing import RateGate
from wan_pipeline.execution.poll_schedule import forget_learned
from wan_pipeline.execution.session import open_ledger
from wan_pipeline.execution.settings import EngineSettings
from wan_pipeline.execution.wire import Wire
from wan_pipeline.money.ledger import Ledger
from wan_pipeline.money.records import new_attempt
from wan_pipeline.outputs.storage import LocalStorage
from wan_pipeline.planning.plan import Plan, PlannedTask, build_plan
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.base import HttpCall, Provider
from wan_pipeline.providers.registry import get_provider

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _fresh_poll_schedules() -> Iterator[None]:
    """What one test's engines learned about a host's latency is not carried into the next test."""
    forget_learned()
    yield
    forget_learned()


def load_fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A CSV whose header is the union of the rows' keys, in first-seen order; missing cells are empty."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


#: every variable a provider adapter reads from the environment (key and base URL)
PROVIDER_VARIABLES = tuple(
    f"{provider}_{suffix}" for provider in ("RIVYA", "EVOLINK", "REAPI", "RUNWARE", "DASHSCOPE")
    for suffix in ("API_KEY", "BASE_URL")
)
#: the in-process emulator the e2e tests run against: nothing queued, a short "render"
FAST_EMULATOR = {"queue_s": 0, "process_s": 0.05}
SPEC_DEFAULTS: dict[str, Any] = {"name": "demo", "provider": "rivya", "model": "wan-2-7-image", "variants": 1,
                                 "seed": 20261121}


def write_dataset(
    directory: Path,
    rows: list[dict[str, Any]] | None,
    *,
    table: str | None = None,
    spec_file: str | None = None,
    **fields: Any,
) -> Path:
    """A dataset on disk: the prompt table `rows` and a spec beside it; returns the spec's path.

    Files are named for the dataset (`<name>.csv`, `<name>.yaml`) unless `table` / `spec_file` say otherwise,
    so several datasets can share a directory; storage defaults to `./out/<name>` beside the spec for the
    same reason. Spec fields default to SPEC_DEFAULTS (a rivya wan-2-7-image spec). `rows` None leaves the
    table to the test (e.g. a Parquet file).
    """
    directory.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {**SPEC_DEFAULTS, **fields}
    spec.setdefault("storage", f"./out/{spec['name']}")
    table = table or f"{spec['name']}.csv"
    spec.setdefault("prompts", table)
    if rows is not None:
        write_csv(directory / table, rows)
    path = directory / (spec_file or f"{spec['name']}.yaml")
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


SpecWriter = Callable[..., Path]


@pytest.fixture
def write_spec(tmp_path: Path) -> SpecWriter:
    """write_spec(rows, table="prompts.csv", **spec_fields) -> path of spec.yaml in tmp_path.

    write_dataset in tmp_path, with the table and spec under fixed names and 16:9 2K images by default.
    """

    def _write(rows: list[dict[str, Any]] | None, table: str = "prompts.csv", **fields: Any) -> Path:
        fields.setdefault("params", {"aspect_ratio": "16:9", "resolution": "2K"})
        return write_dataset(tmp_path, rows, table=table, spec_file="spec.yaml", **fields)

    return _write


# -- a small generated dataset, shared by the gallery, export and browser tests ----------------------


@dataclass(frozen=True)
class GeneratedDataset:
    spec_path: Path
    storage: Path
    dagster_home: Path  # the instance that recorded the runs (the browser test opens the UI on it)
    outputs: int  # stored files
    failed: int  # failed attempts (one rejected by the emulator's content filter)
    modes: frozenset[str]


GENERATED_ROWS = [
    {"prompt_id": "fox", "prompt": "A red fox crossing a frosted meadow at dawn, soft rim light"},
    {"prompt_id": "tea_house", "prompt": "一座雨中的江南茶馆，青瓦白墙，灯笼倒映在石板路上"},
    {"prompt_id": "harbor_night", "prompt": "The same harbor at night, lanterns on the water",
     "reference_images": "harbor.png"},
]


@pytest.fixture(scope="session")
def generated_dataset(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    """Three prompts x two variants through the real Dagster jobs on the emulator; the first task created
    is rejected (content policy), so the dataset holds 5 outputs, 1 failure and two modes. Lineage and the
    report (gallery) are materialized."""
    import dagster as dg
    from e2e_helpers import EXAMPLES, FAST_ENGINE

    from wan_pipeline.assets.dataset import generate_job_name, lineage_job_name, prompt_table_job_name
    from wan_pipeline.definitions import build_definitions

    folder = tmp_path_factory.mktemp("generated")
    shutil.copy(EXAMPLES / "media" / "harbor.png", folder / "harbor.png")
    spec_path = write_dataset(folder, GENERATED_ROWS, table="prompts.csv", spec_file="spec.yaml", name="shots",
                              endpoint="emulator", variants=2, seed=5,
                              params={"aspect_ratio": "16:9", "resolution": "1K"}, storage="out")
    home = folder / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.from_config(str(home)) as instance:
        for name in list(os.environ):
            if name.startswith(("WAN_PIPELINE_", "RIVYA_")):
                mp.delenv(name)
        for name, value in FAST_ENGINE.items():
            mp.setenv(name, value)
        faults = {"reject_content": {"next": 1}}
        mp.setenv("WAN_PIPELINE_EMULATOR", json.dumps({"queue_s": 0, "process_s": 0.05, "faults": faults}))
        mp.setenv("WAN_PIPELINE_GENERATION_ATTEMPTS", "1")
        mp.setenv("WAN_PIPELINE_MAX_CONCURRENCY", "1")  # the first task created is fox/v0
        defs = build_definitions([spec_path])
        from wan_pipeline.planning.spec import load_spec

        spec = load_spec(spec_path)
        assert defs.resolve_job_def(prompt_table_job_name(spec)).execute_in_process(instance=instance).success
        # One run over the three partitions (the fault applies to the first task the emulator sees).
        from wan_pipeline.assets.dagster_compat import range_tags

        run = defs.resolve_job_def(generate_job_name(spec)).execute_in_process(
            instance=instance, tags=range_tags("fox", "harbor_night"), raise_on_error=False)
        assert not run.success  # one partition failed, the others are materialized
        assert defs.resolve_job_def(lineage_job_name(spec)).execute_in_process(instance=instance).success
    return GeneratedDataset(spec_path, folder / "out", home, outputs=5, failed=1,
                            modes=frozenset({"text_to_image", "image_edit"}))
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster for the whole session (each test takes its own database)."""
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    """The URL of a fresh, empty database on the session's cluster."""
    return postgres.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh ledger location on each backend: a SQLite path, or the URL of an empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database("ledger")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS S3 endpoint (real signature checking) with the test bucket created."""
    with seaweedfs(tmp_path_factory.mktemp("weed")) as endpoint:
        ensure_bucket(endpoint)
        yield endpoint




@pytest.fixture
def e2e_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path, set up for datasets with `endpoint: emulator`: ledgers and emulator state under tmp_path/state."""
    monkeypatch.setenv("WAN_PIPELINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", json.dumps(FAST_EMULATOR))
    for var in PROVIDER_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "emulator(protocol, headers): the wire protocol and request headers of the `client` fixture"
    )


def emulator_client(
    state: EmulatorState, protocol: str = "rivya", headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """A client for the emulator of `protocol` over the account `state`, in this process (no socket)."""
    transport = InProcessTransport(create_app(state, protocol))
    return httpx.AsyncClient(transport=transport, base_url=IN_PROCESS_BASE, headers=headers or {})


@pytest.fixture
def state() -> EmulatorState:
    """A fresh emulated account: tasks settle 50 ms after they are created."""
    return EmulatorState(EmulatorConfig(**FAST_EMULATOR))


@pytest.fixture
async def client(request: pytest.FixtureRequest, state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    marker = request.node.get_closest_marker("emulator")
    protocol, headers = marker.args if marker is not None else ("rivya", {"Authorization": "Bearer test-key"})
    async with emulator_client(state, protocol, headers) as opened:
        yield opened


# -- the engine's pieces on the in-process emulator -------------------------------------------------------

#: engine knobs for tests: tiny poll intervals and backoffs, no submission pacing to speak of
FAST_ENGINE = EngineSettings(
    max_concurrency=4,
    submits_per_second=1000.0,
    poll_initial_s=0.01,
    poll_max_s=0.05,
    backoff_base_s=0.01,
    backoff_max_s=0.05,
    request_timeout_s=10.0,
)
#: one image row per prompt id (rivya's wan-2-7-image costs 5 credits each, FIXED)
LIGHTHOUSES = [{"prompt_id": f"p{i}", "prompt": f"A lighthouse number {i} at dusk"} for i in range(3)]


@dataclass
class Rig:
    """A planned dataset, its emulated host (an account the test can inspect and fault) and the collaborators
    the engine's pieces take — a wire to the host, the ledger, the storage — so a test builds one piece alone."""

    plan: Plan
    state: EmulatorState
    provider: Provider
    wire: Wire
    ledger: Ledger
    storage: LocalStorage
    settings: EngineSettings = FAST_ENGINE

    @property
    def journal_ledger(self) -> AsyncLedger:
        """The ledger as the engine's pieces take it; the journal is not started, so calls run inline."""
        return AsyncLedger(self.ledger, Journal(self.ledger))

    @property
    def tasks(self) -> list[PlannedTask]:
        return list(self.plan.tasks)

    def caller(self, gate: RateGate | None = None, **settings: Any) -> Caller:
        chosen = replace(self.settings, **settings)
        return Caller(self.provider, self.wire, self.journal_ledger, gate or RateGate(chosen.submits_per_second),
                      chosen, random.Random(0))  # fmt: skip

    def record(self, task: PlannedTask, attempt_no: int = 1) -> HttpCall:
        """The create of `task`, recorded as `submitting` the way the engine records it before sending."""
        key = task.idempotency_key(attempt_no)
        request = task.request()
        call = self.provider.submit(request, key)
        self.ledger.begin_attempt(new_attempt(task, attempt_no, call, self.provider.presubmit_task_id(request, key),
                                              "test-run"))  # fmt: skip
        return call

    def faults(self, retry_after_s: float = 0.05, **next_counts: int) -> None:
        """The next N matching requests of each named kind fail (e.g. `server_error=2`)."""
        rules = {kind: {"next": n} for kind, n in next_counts.items()}
        self.state.faults.configure(FaultConfig.model_validate({**rules, "retry_after_s": retry_after_s}))


RigFactory = Callable[..., Rig]


@pytest.fixture
async def rig(e2e_env: Path) -> AsyncIterator[RigFactory]:
    """rig(rows=LIGHTHOUSES, config=EmulatorConfig, api_key=..., transport=wrap, **spec_fields) -> Rig.

    Spec fields default to a rivya wan-2-7-image dataset at 1:1 1K (fast to render); `transport` may wrap the
    emulator's in-process transport (e.g. to refuse connections). Everything opened is closed at teardown.
    """
    numbers = itertools.count(1)
    async with AsyncExitStack() as stack:

        def build(
            rows: list[dict[str, Any]] | None = None,
            *,
            config: EmulatorConfig | None = None,
            api_key: str = "test-key",
            transport: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
            **fields: Any,
        ) -> Rig:
            fields.setdefault("params", {"aspect_ratio": "1:1", "resolution": "1K"})
            fields.setdefault("name", f"rig{next(numbers)}")  # datasets apart: ledgers and storage by name
            spec = load_spec(write_dataset(e2e_env, LIGHTHOUSES if rows is None else rows, endpoint="emulator",
                                           **fields))  # fmt: skip
            state, inner = in_process(config or EmulatorConfig(**FAST_EMULATOR), spec.provider)
            client = httpx.AsyncClient(transport=transport(inner) if transport else inner)
            stack.push_async_callback(client.aclose)
            provider = get_provider(spec.provider)
            ledger = open_ledger(spec)
            stack.callback(ledger.close)
            wire = Wire(client, IN_PROCESS_BASE, provider.auth_headers(api_key))
            # an s3:// spec (planning lets URL-only hosts take local files then) keeps its files on local disk here
            root = e2e_env / "s3" / spec.name if spec.is_s3 else Path(spec.storage_root)
            return Rig(build_plan(spec), state, provider, wire, ledger, LocalStorage(root))

        yield build


@pytest.fixture
def fast_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Fast engine and emulator; nothing from the developer's environment (read when defs are built)."""
    from e2e_helpers import FAST_EMULATOR as CLI_FAST_EMULATOR
    from e2e_helpers import FAST_ENGINE as CLI_FAST_ENGINE

    for name in list(os.environ):
        if name.startswith(("WAN_PIPELINE_", "RIVYA_")):
            monkeypatch.delenv(name)
    for name, value in CLI_FAST_ENGINE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WAN_PIPELINE_EMULATOR", CLI_FAST_EMULATOR)
    return monkeypatch
