"""Throughput of the task engine against the in-process emulator, and planning speed of a large table.

Run: .venv/bin/python benchmarks/bench_engine.py [--tasks 120] [--latency 0.5]
Results are written down in benchmarks/RESULTS.md with the command that made them.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import tempfile
import time
from pathlib import Path

import yaml

from wan_pipeline.execution.engine import EngineSettings
from wan_pipeline.execution.session import open_session
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import load_spec


def write_dataset(root: Path, rows: int, variants: int = 1) -> Path:
    with (root / "prompts.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt_id", "prompt", "aspect_ratio", "topic"])
        ratios = ["1:1", "16:9", "9:16", "4:3", "8:1"]
        for i in range(rows):
            w.writerow([f"p{i:05d}", f"A study of light number {i}, film grain", ratios[i % len(ratios)], "bench"])
    spec = {
        "name": "bench",
        "prompts": "prompts.csv",
        "provider": "rivya",
        "model": "wan-2-7-image",
        "endpoint": "emulator",
        "variants": variants,
        "seed": 1,
        "params": {"resolution": "1K"},
        "storage": str(root / "out"),
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return root / "spec.yaml"


def bench_plan(rows: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_dataset(Path(tmp), rows)
        start = time.perf_counter()
        plan = build_plan(load_spec(path))
        elapsed = time.perf_counter() - start
        assert len(plan.tasks) == rows
        return elapsed


def bench_engine(tasks: int, latency: float, concurrency: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WAN_PIPELINE_STATE_DIR"] = tmp
        os.environ["WAN_PIPELINE_EMULATOR"] = f'{{"queue_s": 0, "process_s": {latency}}}'
        spec = load_spec(write_dataset(Path(tmp), tasks))
        plan = build_plan(spec)
        settings = EngineSettings(
            max_concurrency=concurrency, submits_per_second=1000, poll_initial_s=latency / 2, poll_max_s=latency
        )

        async def run() -> int:
            async with open_session(spec, settings) as s:
                outs = await s.engine.run(list(plan.tasks))
            return sum(o.status == "stored" for o in outs)

        start = time.perf_counter()
        stored = asyncio.run(run())
        return time.perf_counter() - start, stored


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=120)
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--rows", type=int, default=10_000)
    args = ap.parse_args()
    print(f"plan {args.rows} rows: {bench_plan(args.rows):.2f} s")
    for conc in (4, 16, 32):
        elapsed, stored = bench_engine(args.tasks, args.latency, conc)
        print(
            f"engine {args.tasks} tasks, emulator latency {args.latency}s, concurrency {conc}: "
            f"{elapsed:.2f} s, {stored / elapsed:.1f} outputs/s ({stored} stored)"
        )


if __name__ == "__main__":
    main()
