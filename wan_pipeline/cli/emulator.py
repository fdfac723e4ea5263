"""`wan-pipeline emulator`: serve the provider emulator on 127.0.0.1 (every protocol under /<provider>)."""

from __future__ import annotations

import click

from wan_pipeline.cli.console import EXIT_OK, say


@click.command("emulator")
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--root-provider",
    default="rivya",
    show_default=True,
    help="protocol also served at the root; every protocol is under /<provider>",
)
@click.option("--queue-s", type=float, default=0.3, show_default=True)
@click.option("--process-s", type=float, default=0.7, show_default=True)
@click.option("--credits", type=float, default=100_000, show_default=True)
@click.option("--api-key", multiple=True, help="accepted bearer token (repeatable); default: any")
@click.option("--state", help="JSON file to persist the emulator's state in")
@click.option("--faults", help='fault config JSON, e.g. \'{"rate_limit": {"rate": 0.2}}\'')
def emulator(
    port: int,
    host: str,
    root_provider: str,
    queue_s: float,
    process_s: float,
    credits: float,
    api_key: tuple[str, ...],
    state: str | None,
    faults: str | None,
) -> int:
    """Serve the provider emulator on 127.0.0.1."""
    from wan_pipeline.emulator.faults import FaultConfig
    from wan_pipeline.emulator.server import serve
    from wan_pipeline.emulator.state import EmulatorConfig

    config = EmulatorConfig(
        queue_s=queue_s,
        process_s=process_s,
        api_keys=list(api_key),
        initial_credits=credits,
        state_path=state,
        faults=FaultConfig.model_validate_json(faults) if faults else FaultConfig(),
    )
    say(
        f"emulator on http://{host}:{port} ({root_provider} at /, every provider at /<provider>; "
        "report: /_emulator/report)",
        to_err=True,
    )
    serve(config, host=host, port=port, root_protocol=root_provider)
    return EXIT_OK
