"""The backfill daemon `wan-pipeline daemon` and `wan-pipeline ui` run (`assets.backfill_daemon`): Dagster's own
iteration, run when a backfill has something new for it — a new backfill, a status, a finished run — and
otherwise on Dagster's 30 s interval. Counted on a real instance, with the loop driven look by look (no clock
in the assertions: `time.monotonic` is stepped by hand)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._daemon.controller import DEFAULT_DAEMON_INTERVAL_SECONDS
from dagster._daemon.daemon import BackfillDaemon, SpanMarker

from wan_pipeline.assets import backfill_daemon
from wan_pipeline.assets.backfill_daemon import QuickBackfillDaemon, daemons_for
from wan_pipeline.cli.daemon import OUR_DAEMON, with_our_daemon


class Loop:
    """The daemon's core loop on an instance, one look at a time, counting Dagster's iterations."""

    def __init__(self, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
        self.iterations = 0
        self.now = 1000.0
        monkeypatch.setattr(backfill_daemon, "LOOK_S", 0.0)
        monkeypatch.setattr(time, "monotonic", lambda: self.now)
        monkeypatch.setattr(backfill_daemon, "execute_backfill_iteration", self._iteration)
        self.daemon = QuickBackfillDaemon({"use_threads": False})
        context = SimpleNamespace(instance=instance)
        self.loop = self.daemon.core_loop(context, _NeverSet())  # type: ignore[arg-type]

    def _iteration(self, *_args: Any, **_kwargs: Any) -> Iterator[None]:
        self.iterations += 1
        yield None

    def look(self, seconds_later: float = 0.1) -> int:
        """Let the loop look once (and iterate if it sees news); iterations so far."""
        self.now += seconds_later
        inside = False  # within an iteration's spans (Dagster's iteration yields None too)
        for item in self.loop:
            if item is None and not inside:  # the loop's pause after a look
                break
            inside = item is SpanMarker.START_SPAN or (inside and item is not SpanMarker.END_SPAN)
        return self.iterations


class _NeverSet:
    def is_set(self) -> bool:
        return False

    def wait(self, _timeout: float) -> bool:
        return False


def _backfill(instance: dg.DagsterInstance) -> str:
    backfill_id = uuid.uuid4().hex[:8]
    instance.add_backfill(PartitionBackfill(backfill_id=backfill_id, status=BulkActionStatus.REQUESTED,
                                            from_failure=False, tags={}, backfill_timestamp=time.time()))  # fmt: skip
    return backfill_id


def _run_of(instance: dg.DagsterInstance, backfill_id: str, status: DagsterRunStatus) -> None:
    instance.add_run(DagsterRun(job_name="generate", run_id=uuid.uuid4().hex, status=status,
                                tags={BACKFILL_ID_TAG: backfill_id}))  # fmt: skip


def test_iterates_on_news_and_otherwise_on_dagsters_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    with dg.instance_for_test() as instance:
        loop = Loop(instance, monkeypatch)
        assert loop.look() == 1  # at start, as Dagster's loop does
        assert loop.look() == 1 and loop.look() == 1  # nothing new: no iteration
        backfill_id = _backfill(instance)
        assert loop.look() == 2  # a new backfill: at the next look, not in up to 30 s
        assert loop.look() == 2
        _run_of(instance, backfill_id, DagsterRunStatus.STARTED)
        assert loop.look() == 2  # a run still going changes nothing the iteration acts on
        _run_of(instance, backfill_id, DagsterRunStatus.SUCCESS)
        assert loop.look() == 3  # a finished run: the next step of the backfill may be launchable
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None
        instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))  # type: ignore[no-untyped-call]
        assert loop.look() == 4  # a cancel request
        assert loop.look(DEFAULT_DAEMON_INTERVAL_SECONDS - 1) == 4
        assert loop.look(1.0) == 5  # and at least every 30 s, whatever it sees


def test_the_instance_daemons_with_ours_for_backfills() -> None:
    with dg.instance_for_test() as instance:
        daemons = daemons_for(instance)
        types = [type(d).daemon_type() for d in daemons]
        assert sorted(types) == sorted(instance.get_required_daemon_types())
        backfill = [d for d in daemons if d.daemon_type() == BackfillDaemon.daemon_type()]
        assert [type(d) for d in backfill] == [QuickBackfillDaemon]
        for daemon in daemons:
            daemon.__exit__(None, None, None)  # type: ignore[no-untyped-call]


def test_dagster_devs_daemon_process_becomes_ours_and_nothing_else() -> None:
    python = "/venv/bin/python"
    options = ["--log-level", "info", "--shutdown-pipe", "7", "-w", "w.yaml"]
    assert with_our_daemon([python, "-m", "dagster._daemon", "run", *options]) == [python, *OUR_DAEMON, *options]
    webserver = [python, "-m", "dagster_webserver", "-h", "127.0.0.1"]
    assert with_our_daemon(webserver) == webserver
