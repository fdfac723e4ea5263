"""execution/memory.py: memory freed by a run goes back to the operating system when the run ends, and
`generate` has Arrow allocate from the C heap (whose free pages can go back).

glibc keeps freed heap memory that sits between live blocks; `release_free_memory` returns its whole pages.
The test frees 48 MB held between small live blocks and reads the process's resident size from /proc.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
from conftest import write_dataset

from wan_pipeline.cli.launch import _side_by_side
from wan_pipeline.execution.memory import _malloc_trim, prefer_system_allocator, release_free_memory
from wan_pipeline.planning.spec import load_spec


def resident_kib() -> int:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0])


def test_memory_freed_between_live_blocks_is_returned() -> None:
    assert _malloc_trim() is not None  # glibc (the project's platform): the heap can be trimmed
    big, keep = [], []
    for _ in range(800):
        big.append(bytearray(60_000))  # under glibc's mmap threshold: on the heap
        # live blocks between them, so the heap cannot just shrink from its top; as large as the freed ones, so
        # malloc cannot place them in older holes of the heap (which made the layout depend on earlier imports)
        keep.append(bytearray(60_000))
    before = resident_kib()
    big.clear()
    freed_but_held = resident_kib()
    release_free_memory()
    after = resident_kib()
    assert before - freed_but_held < 8_000  # free() alone gave back next to nothing
    assert freed_but_held - after > 30_000  # of the 48 MB freed, most goes back
    assert len(keep) == 800


def test_generate_has_arrow_allocate_from_the_c_heap_unless_the_user_chose_a_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow as pa

    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
        prefer_system_allocator()
        assert pa.default_memory_pool().backend_name == before.backend_name  # the user's choice stands
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        prefer_system_allocator()
        assert pa.default_memory_pool().backend_name == "system"
        table = pa.table({"x": list(range(1000))})
        assert table.column("x")[999].as_py() == 999  # allocates from it
    finally:
        pa.set_memory_pool(before)


class _Result:
    """Stands for a run's result (Dagster's holds every event of the run)."""


def test_each_range_run_result_is_let_go_once_read(tmp_path: Path) -> None:
    """generate reads 200 results at 10,000 outputs: keeping them all held every run's events to the end."""
    spec = load_spec(write_dataset(tmp_path, [{"prompt_id": "a", "prompt": "A fox"}], name="lanes"))
    made: list[weakref.ref[_Result]] = []

    def run_one(chunk: list[str]) -> _Result:
        result = _Result()
        made.append(weakref.ref(result))
        return result

    runs = _side_by_side(run_one, [[f"p{i}"] for i in range(6)], 1, spec)  # type: ignore[arg-type]
    for n, result in enumerate(runs):
        del result
        gc.collect()
        assert all(ref() is None for ref in made[:n])  # every earlier one is gone
    assert len(made) == 6


def test_before_arrow_is_loaded_the_choice_is_arrows_own_variable(tmp_path: Path) -> None:
    """`generate` does not load Arrow at its start for this: it names the pool Arrow will start with."""
    code = (
        "import sys, os\n"
        "from wan_pipeline.execution.memory import prefer_system_allocator\n"
        "prefer_system_allocator()\n"
        "assert 'pyarrow' not in sys.modules\n"
        "import pyarrow as pa\n"
        "print(pa.default_memory_pool().backend_name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "system"


def test_generate_pauses_the_collector_until_its_first_create_then_leaves_it_as_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic collector is off while `generate` starts (imports, planning, the instance) and settles once the
    first range run's first create is on its way: on again, with what start-up made frozen out of its passes.
    Afterwards everything is as before (an in-process caller keeps a normal collector)."""
    from wan_pipeline.cli import generate as command
    from wan_pipeline.cli import launch
    from wan_pipeline.cli.main import main

    spec = load_spec(write_dataset(tmp_path, [{"prompt_id": "a", "prompt": "A fox"}], name="gc"))
    seen: dict[str, object] = {}

    def run_one(chunk: list[str]) -> _Result:
        seen.setdefault("collecting in the first run", gc.isenabled())
        return _Result()

    def fake_generate(*_args: object) -> int:
        seen["collecting at start"] = gc.isenabled()
        for _ in launch._side_by_side(run_one, [["a"], ["b"]], 1, spec):  # type: ignore[arg-type]
            seen["collecting after the first create"] = gc.isenabled()
            seen["frozen after the first create"] = gc.get_freeze_count() > 0
        return 0

    monkeypatch.setattr(command, "_generate", fake_generate)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert main(["generate", str(tmp_path / "spec.yaml")]) == 0
    assert seen == {"collecting at start": False, "collecting in the first run": False,
                    "collecting after the first create": True, "frozen after the first create": True}  # fmt: skip
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_run_ending_while_another_thread_imports_arrow_releases_the_heap_and_leaves_arrow_alone(
    tmp_path: Path,
) -> None:
    """`generate` imports Arrow in a thread while its runs wait on the provider; a run ending meanwhile found a
    half-imported `pyarrow` in `sys.modules` and failed on its missing `default_memory_pool` (a demo run of two
    outputs, in CI). Here a stand-in `pyarrow` takes 2 s to import in a thread; releasing memory meanwhile must
    neither fail nor touch it, and once the import is done it uses the real pool function."""
    (tmp_path / "pyarrow.py").write_text(
        "import time\n"
        "time.sleep(2)\n"
        "class _Pool:\n"
        "    def release_unused(self):\n"
        "        print('released')\n"
        "def default_memory_pool():\n"
        "    return _Pool()\n",
        encoding="utf-8",
    )
    code = (
        "import sys, threading, time\n"
        "from wan_pipeline.execution.memory import release_free_memory\n"
        "loading = threading.Thread(target=lambda: __import__('pyarrow'))\n"
        "loading.start()\n"
        "while 'pyarrow' not in sys.modules:\n"
        "    time.sleep(0.01)\n"
        "release_free_memory()\n"
        "print('during import: fine')\n"
        "loading.join()\n"
        "release_free_memory()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["during", "import:", "fine", "released"]
