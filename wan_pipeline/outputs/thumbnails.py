"""Gallery thumbnails kept between reports: made once per stored file, not at every report.

The gallery page inlines a thumbnail of every output, and each report made all of them again: about 19 ms for a
1024x1024 PNG on this machine, so a dataset of 10,000 images spent three minutes on its page after every
`generate`, even one that added nothing (issue 7: what a run costs must not grow with the dataset). They are
kept here by the file's SHA-256 and the thumbnail's size, in a SQLite file beside the ledger (local disk, also
for an S3 dataset: a cache, rebuilt where it is missing). The generation step puts each output's as its
partition is materialized (it decodes the image for Dagster's previews then, while the run waits on the
provider), so the page after a `generate` decodes none of the files it added either. Looked up one at a
time, so the page is still the one thing held whole; thumbnails of files no longer in the dataset are
dropped when a page is written.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

#: the file, in the dataset's state folder (`execution.endpoints.state_dir`)
THUMBNAILS_FILE = "thumbnails.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS thumbs (sha256 TEXT NOT NULL, side INTEGER NOT NULL, uri TEXT NOT NULL, "
    "PRIMARY KEY (sha256, side))"
)


class ThumbnailCache:
    """`get` and `put` (each its own transaction, unsynced: the range runs side by side and a report may write
    at once), `keep_only` what a page used, `close`. Any failure of the file (locked past its timeout,
    unreadable, a full disk) makes it a cache that misses: the page is still written, its thumbnails made as
    before."""

    def __init__(self, path: Path, side: int) -> None:
        self.side = side
        self._db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=5, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=OFF")  # a cache: a lost write is a thumbnail made again
            self._db.execute(_SCHEMA)
        except (sqlite3.Error, OSError):
            self.close()

    def get(self, sha256: str) -> str | None:
        if self._db is None or not sha256:
            return None
        try:
            query = "SELECT uri FROM thumbs WHERE sha256=? AND side=?"
            with closing(self._db.execute(query, (sha256, self.side))) as c:
                row = c.fetchone()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None

    def put(self, sha256: str, uri: str) -> None:
        if self._db is None or not sha256:
            return
        try:
            self._db.execute("INSERT OR REPLACE INTO thumbs VALUES (?, ?, ?)", (sha256, self.side, uri))
        except sqlite3.Error:
            return

    def keep_only(self, used: set[str]) -> None:
        """Drop the thumbnails of files the page did not show (of this size; other sizes are left alone)."""
        if self._db is None:
            return
        try:
            with closing(self._db.execute("SELECT sha256 FROM thumbs WHERE side=?", (self.side,))) as c:
                stale = [(sha, self.side) for (sha,) in c.fetchall() if sha not in used]
            self._db.executemany("DELETE FROM thumbs WHERE sha256=? AND side=?", stale)
        except sqlite3.Error:
            return

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
