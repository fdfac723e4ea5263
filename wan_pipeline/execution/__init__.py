"""How it runs: the async task engine (every socket, timer, retry and ledger write), the HTTP wire, endpoint
selection and the per-run session that wires them together.

May import: every layer below (``errors``, ``providers``, ``planning``, ``money``, ``outputs``); the emulator only
through ``endpoints`` (the one seam for ``endpoint: emulator``).
"""
