"""A live progress line for `generate`, read from the ledger while the Dagster run works."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from wan_pipeline.execution.session import open_ledger
from wan_pipeline.outputs.status import counts, output_states, spend_text
from wan_pipeline.planning.plan import Plan


class Progress:
    def __init__(self, plan: Plan, total: int, out: TextIO = sys.stderr, interval_s: float = 0.5) -> None:
        self.plan = plan
        self.total = total
        self.out = out
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wan-progress", daemon=True)
        self._last = ""
        self._tty = out.isatty()

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._render(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._render()

    def line(self) -> str:
        with open_ledger(self.plan.spec) as ledger:
            states = output_states(self.plan, ledger)
        c = counts(states)
        done = c.get("stored", 0)
        width = 28
        filled = int(width * done / self.total) if self.total else width
        credits = sum(s.credits_final or s.credits_reserved for s in states)
        usd = sum(s.cost_usd for s in states)
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} stored · "
            f"{c.get('in_flight', 0)} in flight · {c.get('failed', 0)} failed · {spend_text(credits, usd)}"
        )

    def _render(self, final: bool = False) -> None:
        try:
            text = self.line()
        except Exception:  # the ledger may be mid-creation on the very first tick
            return
        if self._tty:
            self.out.write("\r" + text + ("\n" if final else ""))
            self.out.flush()
        elif text != self._last or final:
            self.out.write(text + "\n")
            self.out.flush()
        self._last = text
