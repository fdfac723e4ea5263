"""The lineage built while `generate`'s runs go on, so the lineage step after the last run has only that run's rows
left to add.

The lineage step is incremental (`outputs.lineage.write_lineage`: the file already written is kept, only changed
attempts are recomputed), but on a new dataset, or one extended by thousands of prompts, everything is new by
the time it runs: 0.12-0.13 s of the step at 2,000 outputs, between the last output stored and `generate`'s
exit, while the provider sits idle. Built after each range run but the last instead — in a thread, while the other
runs wait on the provider — the step after the last run adds that run's rows (0.065-0.087 s of the step).
The file is then a true snapshot of what is stored while the runs go on: what the step would have written had
it run then.

A pass waits for a gap between waves (`money.lulls`): built among a wave's
creates it would delay them, and a slot's create delayed once stays late for the rest of the run.

Not a second writer of the lineage: a pass starts only when none is running, and the lineage step waits for the
last one (`finish`) before it reads and rewrites the file.
"""

from __future__ import annotations

import logging
import threading

from wan_pipeline.execution.session import open_ledger
from wan_pipeline.money.lulls import wait_for_lull
from wan_pipeline.planning.spec import DatasetSpec
from wan_pipeline.resources.environment import resources_from_env
from wan_pipeline.resources.storage import StorageResource

log = logging.getLogger(__name__)


class LineageWarmup:
    """`kick()` after a range run ends: an incremental lineage pass in a thread, unless one is running;
    `finish()` before the lineage step."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self._thread: threading.Thread | None = None
        #: passes completed (for tests)
        self.passes = 0

    def kick(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._pass, name="wan-lineage-warmup", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _pass(self) -> None:
        from wan_pipeline.outputs.lineage import write_lineage  # Arrow: loaded by then (`launch._load_lineage_modules`)

        wait_for_lull()
        storage = resources_from_env()["storage"]
        assert isinstance(storage, StorageResource)
        try:
            with open_ledger(self.spec) as ledger:
                write_lineage(ledger, self.spec.name, storage.for_spec(self.spec))
            self.passes += 1
        except Exception as exc:  # only a head start for the lineage step, which builds (and reports) it anyway
            log.debug("lineage warm-up pass failed: %s", type(exc).__name__)
