"""`wan-pipeline emulator --port N`: the emulator on 127.0.0.1 for tests, benchmarks and manual use."""

from __future__ import annotations

import uvicorn

from wan_pipeline.emulator.app import create_server_app
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState


def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8765, root_protocol: str = "rivya") -> None:
    app = create_server_app(EmulatorState(config), root_protocol)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
