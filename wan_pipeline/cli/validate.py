"""`wan-pipeline validate SPEC`: check a spec and its prompt table against the provider; spend nothing."""

from __future__ import annotations

from collections import Counter

import click
from rich.table import Table

from wan_pipeline.cli.console import EXIT_OK, emit_json, json_option, out, say, verbose_option
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec


@click.command("validate")
@click.argument("spec_path", metavar="SPEC")
@json_option
@verbose_option
def validate(spec_path: str, as_json: bool) -> int:
    """Check a spec and its prompt table; spend nothing."""
    spec = load_spec(spec_path)
    plan = build_plan(spec)
    modes = Counter(t.mode.value for t in plan.tasks)
    if as_json:
        emit_json(
            {
                "ok": True,
                "dataset": spec.name,
                "provider": spec.provider,
                "model": spec.model,
                "prompts": len(plan.rows),
                "outputs": len(plan.tasks),
                "outputs_by_mode": dict(sorted(modes.items())),
                "plan_digest": plan.digest(),
            }
        )
        return EXIT_OK
    say(f"ok: {spec.name}: {len(plan.rows)} prompt(s), {len(plan.tasks)} output(s) on {spec.provider}/{spec.model}")
    table = Table("mode", "outputs", box=None, padding=(0, 2), pad_edge=True)
    for mode, n in sorted(modes.items()):
        table.add_row(mode, str(n))
    out.print(table)
    say(f"  plan digest: {plan.digest()} (every output's fingerprint; a complete replay of its lineage gives the same)")
    return EXIT_OK
