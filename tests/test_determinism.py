"""The same spec and table give the same fingerprints and request bodies in every process.

Each run is a fresh interpreter with its own PYTHONHASHSEED (so set and dict-of-str iteration orders
differ) and its own empty bytecode cache; it plans and generates the shipped example datasets on a fresh
in-process emulator and prints what it planned and the SHA-256 of every create body the emulator received.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from e2e_helpers import EXAMPLES, clean_environ

#: every provider's image example without uploaded references (an upload's handle is the host's to choose)
SPECS = ["demo", "evolink", "reapi", "dashscope"]
HASH_SEEDS = ["0", "1", "4242"]

SCRIPT = """
import asyncio, json, sys
from wan_pipeline.emulator.app import in_process
from wan_pipeline.emulator.state import EmulatorConfig
from wan_pipeline.execution.engine import EngineSettings
from wan_pipeline.execution.session import open_session
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec

FAST = EngineSettings(submits_per_second=1000.0, poll_initial_s=0.01, poll_max_s=0.05)

async def generate(path):
    spec = load_spec(path)
    plan = build_plan(spec)
    state, transport = in_process(EmulatorConfig(queue_s=0, process_s=0.01), spec.provider)
    async with open_session(spec, FAST, transport=transport) as session:
        outcomes = await session.engine.run(list(plan.tasks))
        requests = {a.identity: a.request_json for a in session.ledger.all_attempts(spec.name)}
    return {
        "statuses": sorted({o.status for o in outcomes}),
        "tasks": [[t.identity, t.seed, t.idempotency_key(1), t.provenance.table_sha256] for t in plan.tasks],
        "requests": requests,
        "create_bodies": state.create_bodies,
    }

print(json.dumps({p: asyncio.run(generate(p)) for p in sys.argv[1:]}, sort_keys=True))
"""


def run_in_fresh_process(hash_seed: str, workdir: Path) -> dict[str, Any]:
    shutil.copytree(EXAMPLES, workdir / "examples")
    env = clean_environ()
    env.update(
        PYTHONHASHSEED=hash_seed,
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPYCACHEPREFIX=str(workdir / "pycache"),  # empty: nothing compiled by another run is reused
    )
    specs = [str(workdir / "examples" / f"{name}.yaml") for name in SPECS]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *specs], env=env, cwd=workdir, capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Paths differ per run (each has its own copy); compare by spec name.
    return {Path(k).stem: v for k, v in json.loads(done.stdout).items()}


def test_fingerprints_and_request_bodies_do_not_depend_on_the_process(tmp_path: Path) -> None:
    runs = [run_in_fresh_process(seed, tmp_path / f"hashseed_{seed}") for seed in HASH_SEEDS]
    first = runs[0]
    assert set(first) == set(SPECS)
    for name in SPECS:
        assert first[name]["statuses"] == ["stored"]
        assert first[name]["tasks"] and first[name]["create_bodies"]
        # the bodies the emulator received are the ones the ledger recorded, byte for byte
        import hashlib

        recorded = {hashlib.sha256(b.encode("utf-8")).hexdigest() for b in first[name]["requests"].values()}
        assert recorded == set(first[name]["create_bodies"])
    for other in runs[1:]:
        assert other == first
