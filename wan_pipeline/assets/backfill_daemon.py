"""Dagster's backfill daemon, woken by what a backfill waits for instead of a 30 s clock.

Dagster's `BackfillDaemon` runs one iteration (launch what is launchable, mark what is done) and then sleeps
`DEFAULT_DAEMON_INTERVAL_SECONDS`, 30 s, a constant rather than an instance setting. So a click on
"Materialize" waited up to 30 s (15 s on average) before its first run existed, and a backfill whose later
steps wait for earlier ones (the prompt table, then the generate assets) lost up to 30 s more at each step:
on a 2,000-partition backfill that was most of the gap between a UI backfill and `generate`
(benchmarks/RESULTS.md, (f)).

`QuickBackfillDaemon` runs Dagster's own iteration (`execute_backfill_iteration`, unchanged) and looks every
`LOOK_S` at what could make the next one do something: the set of unfinished backfills and how many of their
runs have finished. When that changes it iterates at once; otherwise every 30 s, as Dagster does (an iteration
also catches what the look does not see, such as a code location that came back). A look is two indexed
queries per unfinished backfill, nothing when there is none.

`daemons_for(instance)` is the instance's daemons with this one in place of the stock backfill daemon;
`wan-pipeline daemon` (and the daemon `wan-pipeline ui` starts) runs Dagster's daemon controller with it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import dagster as dg
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.dagster_run import FINISHED_STATUSES, RunsFilter
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.workspace.context import IWorkspaceProcessContext
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.controller import DEFAULT_DAEMON_INTERVAL_SECONDS, create_daemon_of_type
from dagster._daemon.daemon import BackfillDaemon, DaemonIterator, DagsterDaemon, SpanMarker
from dagster._daemon.utils import DaemonErrorCapture

__all__ = ["LOOK_S", "QuickBackfillDaemon", "backfill_signature", "daemons_for"]

#: how often the daemon looks for a new backfill or a finished run of one
LOOK_S = 1.0
#: statuses of a backfill the daemon still works on (Dagster's iteration reads the same three)
_UNFINISHED = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]

Signature = frozenset[tuple[str, str, int]]
Context = IWorkspaceProcessContext[Any]


def backfill_signature(instance: dg.DagsterInstance) -> Signature:
    """What the next iteration would act on: each unfinished backfill, its status and its finished runs."""
    backfills = instance.get_backfills(filters=BulkActionsFilter(statuses=_UNFINISHED))
    return frozenset(
        (b.backfill_id, b.status.value, instance.get_runs_count(
            RunsFilter(tags={BACKFILL_ID_TAG: b.backfill_id}, statuses=list(FINISHED_STATUSES))))
        for b in backfills
    )  # fmt: skip


class QuickBackfillDaemon(BackfillDaemon):
    """Dagster's backfill daemon, iterating as soon as a backfill has something new for it."""

    def core_loop(self, workspace_process_context: Context, shutdown_event: threading.Event) -> DaemonIterator:
        instance = workspace_process_context.instance
        futures: dict[str, Future[Any]] = {}
        seen: Signature | None = None
        last = float("-inf")
        while not shutdown_event.is_set():
            now = time.monotonic()
            current = self._look(instance)
            if current != seen or now - last >= DEFAULT_DAEMON_INTERVAL_SECONDS:
                # seen as it was before the iteration: what changes during it is news for the next look (at
                # worst one more iteration for what the iteration itself changed, never a change missed)
                seen, last = current, now
                yield from self._iteration(workspace_process_context, futures)
            shutdown_event.wait(LOOK_S)
            yield None  # a chance for the controller's heartbeat

    def _look(self, instance: dg.DagsterInstance) -> Signature | None:
        try:
            return backfill_signature(instance)
        except Exception:  # the storage hiccuped: the 30 s iteration still runs, and it reports errors
            self._logger.warning("could not read the backfills' state; iterating on Dagster's interval")
            return None

    def _iteration(self, context: Context, futures: dict[str, Future[Any]]) -> DaemonIterator:
        """One of Dagster's iterations, framed and guarded as Dagster's own loop does."""
        yield SpanMarker.START_SPAN
        try:
            yield from execute_backfill_iteration(
                context, self._logger, threadpool_executor=self._threadpool_executor,
                backfill_futures=futures, submit_threadpool_executor=self._submit_threadpool_executor,
            )  # fmt: skip
        except Exception:
            yield DaemonErrorCapture.process_exception(
                exc_info=sys.exc_info(), logger=self._logger, log_message="BackfillDaemon caught an error"
            )
        yield SpanMarker.END_SPAN


def daemons_for(instance: dg.DagsterInstance) -> Sequence[DagsterDaemon[Any]]:
    """The daemons the instance requires, with `QuickBackfillDaemon` as its backfill daemon."""
    return [
        QuickBackfillDaemon(instance.get_backfill_settings())
        if daemon_type == BackfillDaemon.daemon_type()
        else create_daemon_of_type(daemon_type, instance)
        for daemon_type in instance.get_required_daemon_types()
    ]
