"""Files this process stored and verified itself, noted for the file audit (`outputs.audit`).

The engine hashes every download, decodes it at the size it records and stores it; the audit's first pass
over those files then read, hashed and decoded each one again — after the last output of `generate`, when
the provider had nothing left to do (0.2 s of the 0.7 s after 2,000 outputs: issue 7). So the engine notes
each file's stamp right after writing it, and the audit takes the notes as it takes its own earlier passes':
a file whose stamp and record are unchanged since it was verified is not read again. A note counts only in
the process that wrote the file (the audit's state file carries what was verified elsewhere), and the first
audit of that storage takes it.
"""

from __future__ import annotations

import threading

from wan_pipeline.money.ledger import StoredOutput
from wan_pipeline.outputs.storage import Storage

#: notes kept at most before an audit takes them (a run's process that stores and never audits: a UI run)
MAX_NOTES = 100_000

_NOTES: dict[tuple[str, str], tuple[str, str]] = {}
_LOCK = threading.Lock()


def claim(out: StoredOutput) -> str:
    """What the ledger says of a file: a change of it means verifying the file again."""
    return f"{out.media_sha256}:{out.mime_type}:{out.width}x{out.height}"


def note_verified(storage: Storage, rel: str, out: StoredOutput) -> None:
    """`out`'s file at `rel` was just written from bytes that hash to its SHA-256 and decode at its size."""
    stamp = storage.stamp(rel)
    if stamp is None:
        return
    with _LOCK:
        if len(_NOTES) < MAX_NOTES:
            _NOTES[(storage.root, rel)] = (claim(out), stamp)


def take_notes(storage: Storage) -> dict[str, tuple[str, str]]:
    """This process's notes for `storage` (relpath -> (claim, stamp)), forgotten here once taken."""
    with _LOCK:
        mine = {rel: note for (root, rel), note in _NOTES.items() if root == storage.root}
        for rel in mine:
            del _NOTES[(storage.root, rel)]
    return mine
