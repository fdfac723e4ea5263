"""`generate`'s first wave, bought while Dagster loads.

Before its first create, `generate` spent about a second on Dagster: importing it (0.46 s), creating or opening
the instance (0.29 s on a new one), materializing the prompt table and starting the first range run (0.3 s) —
while the provider, the physical limit, sat idle. A short script on the provider's SDK has its first task at
the host half a second after it starts (issue 7, benchmark (c)). So once the spec is valid and the plan made,
a head start sends the first wave — the account's concurrency worth of outputs, from the first partitions to
generate — on its own engine and event loop, in a thread, and Dagster loads meanwhile: its work happens in
the provider's shadow.

Nothing about money changes: the head start is an engine like a run's, on the same ledger, leases and create
turns. Its outputs are leased to it, so the first range run's engine, which has the same outputs in its range,
waits for each and then finds it stored (or resumes its record) — exactly as a second machine would — and
materializes it. The attempts carry the first range run's id, which `launch` gives that run. The head start
opens its session before any run, so its creates go first (`money.wakeups.loop_rank`).

Not for the in-process emulator (its state belongs to one engine at a time, like `launch._lanes`' runs), nor
on a Dagster instance whose dagster.yaml you wrote yourself (see `head_start`).
"""

from __future__ import annotations

import asyncio
import threading
import uuid

from wan_pipeline.cli.console import say
from wan_pipeline.cli.home import ensure_dagster_home, written_by_us
from wan_pipeline.errors import WanPipelineError
from wan_pipeline.execution.endpoints import resolve_endpoint
from wan_pipeline.execution.session import open_session
from wan_pipeline.execution.settings import EngineSettings, settings_from_env
from wan_pipeline.planning.plan import Plan, PlannedTask
from wan_pipeline.planning.spec import DatasetSpec

#: longest Dagster's loading waits for the head start's creates to leave: imports hold the interpreter for long
#: stretches (pydantic builds its schemas in native code), and the wave of 32 creates took 0.4-0.5 s to
#: leave beside them instead of about 0.1 s alone
WAVE_CAP_S = 0.5
_SENT = frozenset({"submitted", "failed", "stored"})


class HeadStart:
    """`start()` sends `tasks` on a thread of their own; `wait()` until they are final (what failed or is
    pending is left to the run that has them in its range, which resumes their records)."""

    def __init__(self, spec: DatasetSpec, tasks: list[PlannedTask], settings: EngineSettings) -> None:
        self.spec, self.tasks, self.settings = spec, tasks, settings
        #: the Dagster run id the first range run is given (its attempts are recorded under it)
        self.run_id = str(uuid.uuid4())
        self._thread = threading.Thread(target=self._run, name="wan-head-start", daemon=True)
        self.error: BaseException | None = None
        self._done: set[str] = set()
        self._sent = threading.Event()

    def start(self) -> HeadStart:
        self._thread.start()
        return self

    def wait_sent(self, cap_s: float = WAVE_CAP_S) -> None:
        """Until each of its outputs has been sent (or has failed, or was stored already), at most `cap_s`."""
        self._sent.wait(cap_s)

    def wait(self) -> None:
        """Until it is done; a line on stderr if it stopped early (its outputs are in the runs' ranges)."""
        self._thread.join()
        if self.error is not None:
            why = str(self.error) if isinstance(self.error, WanPipelineError) else type(self.error).__name__
            say(f"  the head start stopped early ({why}): the runs resumed its outputs", to_err=True)

    def _run(self) -> None:
        async def go() -> None:
            async with open_session(self.spec, self.settings, run_id=self.run_id, on_event=self._heard) as session:
                await session.engine.run(self.tasks)

        try:
            asyncio.run(go())
        except BaseException as exc:  # kept for the caller: the runs resume what the head start recorded
            self.error = exc
        finally:
            self._sent.set()

    def _heard(self, kind: str, task: PlannedTask, detail: str) -> None:
        if kind in _SENT:
            self._done.add(task.identity)
            if len(self._done) >= len(self.tasks):
                self._sent.set()


def head_start(spec: DatasetSpec, plan: Plan, todo: dict[str, int]) -> HeadStart | None:
    """The head start of a `generate` with `todo` (partition -> outputs to make, in plan order), or None when
    there is nothing to do, the endpoint is the in-process emulator, or the Dagster instance is not the one
    the CLI manages: an instance you configured yourself (PostgreSQL, say) may fail to load, and a
    configuration error must stop `generate` before anything is bought."""
    if not todo or resolve_endpoint(spec).in_process or not written_by_us(ensure_dagster_home()):
        return None
    settings = settings_from_env(spec.provider)
    wave = settings.max_concurrency
    tasks: list[PlannedTask] = []
    for pid in todo:
        tasks.extend(plan.tasks_for(pid))
        if len(tasks) >= wave:
            break
    return HeadStart(spec, tasks[:wave], settings).start()
