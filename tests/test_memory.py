"""execution/memory.py: memory freed by a run goes back to the operating system when the run ends, and
`generate` has Arrow allocate from the C heap (whose free pages can go back).

glibc keeps freed heap memory that sits between live blocks; `release_free_memory` returns its whole pages.
The test frees 48 MB held between small live blocks and reads the process's resident size from /proc.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wan_pipeline.execution.memory import _malloc_trim, prefer_system_allocator, release_free_memory


def resident_kib() -> int:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0])


def test_memory_freed_between_live_blocks_is_returned() -> None:
    assert _malloc_trim() is not None  # glibc (the project's platform): the heap can be trimmed
    big, keep = [], []
    for _ in range(800):
        big.append(bytearray(60_000))  # under glibc's mmap threshold: on the heap
        keep.append(bytearray(1_000))  # live blocks between them, so the heap cannot just shrink from its top
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
