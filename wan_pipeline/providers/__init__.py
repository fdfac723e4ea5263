"""What a host understands: the provider-neutral parameters (``params``), sizes and media types, the model
catalog (limits, prices), and one sans-I/O module per wire protocol behind the ``base.Provider`` seam.

May import: ``wan_pipeline.errors`` only. Nothing here opens a socket (DESIGN §2, STYLE "httpx / h11").
"""
