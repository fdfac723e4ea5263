"""Live progress for `generate`: done/total, rate, ETA, spend and failures, rendered with rich.

A background thread polls a snapshot function (what is stored, in flight, failed, spent) and feeds it to a
rich progress bar on a terminal, or prints a plain line when it changes (at most every few seconds) when
stderr is a file or a pipe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from wan_pipeline.cli.console import err
from wan_pipeline.outputs.status import spend_text


@dataclass(frozen=True)
class Snapshot:
    stored: int
    in_flight: int
    failed: int
    credits: float
    usd: float

    def line(self, total: int) -> str:
        return (
            f"{self.stored}/{total} stored · {self.in_flight} in flight · {self.failed} failed · "
            f"{spend_text(self.credits, self.usd)}"
        )


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "-/s", style="progress.data.speed")


class LiveProgress:
    """`with LiveProgress(read, total): ...` shows progress while the block runs, then a final line."""

    def __init__(
        self, read: Callable[[], Snapshot], total: int, console: Console = err, interval_s: float = 0.5
    ) -> None:
        self.read = read
        self.total = total
        self.console = console
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wan-progress", daemon=True)
        self._bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[in_flight]} in flight · {task.fields[failed]} failed · {task.fields[spend]}"),
            console=console,
            disable=not console.is_terminal,
        )
        self._task = self._bar.add_task("stored", total=total, in_flight=0, failed=0, spend="0 credits")
        self._last_line = ""
        self._last_print = 0.0

    def __enter__(self) -> LiveProgress:
        self._bar.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        snap = self._poll()
        self._bar.stop()
        if snap is not None and not self.console.is_terminal:
            self.console.print(snap.line(self.total), markup=False)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            snap = self._poll()
            if snap is None or self.console.is_terminal:
                continue
            line = snap.line(self.total)
            if line != self._last_line and time.monotonic() - self._last_print >= 5:
                self.console.print(line, markup=False)
                self._last_line, self._last_print = line, time.monotonic()

    def _poll(self) -> Snapshot | None:
        try:
            snap = self.read()
        except Exception:  # the ledger may be mid-creation on the very first tick; the next tick retries
            return None
        self._bar.update(
            self._task,
            completed=snap.stored,
            in_flight=snap.in_flight,
            failed=snap.failed,
            spend=spend_text(snap.credits, snap.usd),
        )
        return snap
