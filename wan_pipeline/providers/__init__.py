"""What a host understands: the provider-neutral parameters (``params``), sizes and media types, the model
catalog (limits, prices), and one sans-I/O module per wire protocol behind the ``base.Provider`` seam
(the larger protocols keep reading their answers — task states, error classes — in ``<protocol>_replies``).

May import: ``wan_pipeline.errors`` only. Nothing here opens a socket (DESIGN §2, STYLE "httpx / h11").
"""
