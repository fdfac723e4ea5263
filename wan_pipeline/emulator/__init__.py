"""The provider emulator: an ASGI app speaking all five wire protocols as the seeds and sheets describe them.

It is a stand-in for the hosts, so it keeps its own copy of every limit and preset (``emulator/limits.py``)
rather than importing the client's: where the two disagree, a test notices. May import: ``errors`` only.
Production code reaches it through ``execution.endpoints`` and the ``emulator`` CLI command alone.
"""
