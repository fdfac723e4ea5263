"""Replay: a dataset rebuilt from its lineage file alone sends the same request bodies to a fresh host.

Each shipped example spec (every provider, images and video, references included) is generated on a fresh
in-process emulator; the lineage alone (copied to a directory of its own) is replayed into a fresh
directory and generated again on another fresh emulator. The raw create bodies each emulator received
(SHA-256 of the bytes, with their counts) must be identical.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_csv

from wan_pipeline.emulator.app import in_process
from wan_pipeline.emulator.faults import FaultConfig
from wan_pipeline.emulator.state import EmulatorConfig, EmulatorState
from wan_pipeline.errors import InvalidInput
from wan_pipeline.execution.engine import EngineSettings
from wan_pipeline.execution.session import open_session
from wan_pipeline.outputs.card import CARD_PATH, card_for_lineage_file
from wan_pipeline.outputs.lineage import LINEAGE_SCHEMA_VERSION, SCHEMA_KEY, write_lineage
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.replay import replay
from wan_pipeline.planning.spec import load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FAST = EngineSettings(
    max_concurrency=4, submits_per_second=1000.0, poll_initial_s=0.01, poll_max_s=0.05, backoff_base_s=0.01,
    backoff_max_s=0.05, request_timeout_s=30.0,
)
#: every provider's example (rivya's is demo.yaml), plus the video examples (reference uploads among them)
EXAMPLE_SPECS = ["demo", "evolink", "reapi", "runware", "dashscope", "rivya_video", "dashscope_video"]


def generate(spec_path: Path) -> tuple[EmulatorState, Path]:
    """Generate the whole plan on a fresh in-process emulator; returns it and the written lineage file."""
    spec = load_spec(spec_path)
    plan = build_plan(spec)
    state, transport = in_process(EmulatorConfig(queue_s=0, process_s=0.02, faults=FaultConfig()), spec.provider)

    async def run() -> str:
        async with open_session(spec, FAST, run_id="test", transport=transport) as session:
            outcomes = await session.engine.run(list(plan.tasks))
            assert {o.status for o in outcomes} == {"stored"}, [str(o.error) for o in outcomes if o.error]
            uri, _ = write_lineage(session.ledger, spec.name, session.storage)
            return uri

    return state, Path(asyncio.run(run()))


def lineage_alone(lineage: Path, dest: Path) -> Path:
    """The lineage file copied where nothing else of the dataset is (no spec, no table, no media)."""
    dest.mkdir(parents=True)
    return Path(shutil.copy(lineage, dest / "lineage.parquet"))


@pytest.mark.parametrize("example", EXAMPLE_SPECS)
def test_a_replayed_example_sends_byte_identical_create_bodies_to_a_fresh_emulator(
    example: str, tmp_path: Path
) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    original_state, lineage = generate(tmp_path / "examples" / f"{example}.yaml")
    assert original_state.create_bodies, "the emulator recorded no create request"

    # Reference files are not beside a copied lineage: they are found stored or at their recorded path.
    alone = lineage_alone(lineage, tmp_path / "colleague" / "lineage")
    result = replay(alone, tmp_path / "replayed", endpoint="emulator", search=[tmp_path / "examples"])
    assert result.outputs == result.planned == len(pq.read_table(alone).column("identity").unique())
    replay_state, replay_lineage = generate(result.spec_path)

    before, after = requests_by_identity(lineage), requests_by_identity(replay_lineage)
    assert sorted(after) == sorted(before)
    if not original_state.files:
        # No uploads: every create body is the client's alone, and all of them arrived byte for byte.
        assert replay_state.create_bodies == original_state.create_bodies
        assert {_sha256_text(b) for b in before.values()} == set(original_state.create_bodies)
    else:
        # An uploaded reference travels as the handle the host issued for that upload (a new one per host
        # instance); everything else in the body is the client's and must be identical.
        assert sum(replay_state.create_bodies.values()) == sum(original_state.create_bodies.values())
        masked_before = {k: mask(v, upload_handles(original_state)) for k, v in before.items()}
        masked_after = {k: mask(v, upload_handles(replay_state)) for k, v in after.items()}
        assert masked_after == masked_before
        plain = [b for b in before.values() if "<upload>" not in mask(b, upload_handles(original_state))]
        assert {_sha256_text(b) for b in plain} <= set(replay_state.create_bodies)
    seeds = {r["identity"]: (r["seed"], r["seed_source"]) for r in pq.read_table(lineage).to_pylist()}
    assert {r["identity"]: (r["seed"], r["seed_source"]) for r in pq.read_table(replay_lineage).to_pylist()} == seeds


def requests_by_identity(lineage: Path) -> dict[str, str]:
    """The create body each output was bought with (lineage's request_json is the wire text itself)."""
    return {r["identity"]: r["request_json"] for r in pq.read_table(lineage).to_pylist()}


def upload_handles(state: EmulatorState) -> list[str]:
    """Every id, key and URL the emulator issued for an uploaded file, longest first."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and len(value) >= 8:
            found.add(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)

    walk(state.files)
    return sorted(found, key=len, reverse=True)


def mask(text: str, handles: list[str]) -> str:
    for handle in handles:
        text = text.replace(handle, "<upload>")
    return text


def _sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()

def test_lineage_names_the_inputs_and_code_of_every_row(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    spec_path = tmp_path / "examples" / "rivya_video.yaml"
    _, lineage = generate(spec_path)
    table = pq.read_table(lineage)
    assert table.schema.metadata[SCHEMA_KEY] == str(LINEAGE_SCHEMA_VERSION).encode()
    rows = table.to_pylist()
    spec_sha = _sha256(spec_path)
    table_sha = _sha256(tmp_path / "examples" / "rivya_video_prompts.csv")
    assert {r["spec_sha256"] for r in rows} == {spec_sha}
    assert {r["table_sha256"] for r in rows} == {table_sha}
    assert {r["master_seed"] for r in rows} == {load_spec(spec_path).seed}
    assert all(r["code_version"] and r["code_version"].startswith("0.1.0") for r in rows)
    edit = next(r for r in rows if r["prompt_id"] == "edit_clip")
    media = tmp_path / "examples" / "media"
    assert json.loads(edit["reference_sha256s"]) == [_sha256(media / "portrait.jpg"), _sha256(media / "clip.mp4")]
    card = (lineage.parent.parent / CARD_PATH).read_text(encoding="utf-8")
    assert spec_sha in card and table_sha in card and "wan-pipeline replay lineage/lineage.parquet" in card


def test_a_row_keeps_the_table_hash_it_was_made_with_after_the_table_is_edited(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [{"prompt_id": "a", "prompt": "a red kite"}, {"prompt_id": "b", "prompt": "a boat"}]
    write_csv(tmp_path / "prompts.csv", rows)
    spec_path = _spec(tmp_path)
    first_sha = _sha256(tmp_path / "prompts.csv")
    generate(spec_path)
    write_csv(tmp_path / "prompts.csv", [*rows, {"prompt_id": "c", "prompt": "a lighthouse"}])
    _, lineage = generate(spec_path)
    by_prompt = {r["prompt_id"]: r for r in pq.read_table(lineage).to_pylist()}
    assert by_prompt["a"]["table_sha256"] == by_prompt["b"]["table_sha256"] == first_sha
    assert by_prompt["c"]["table_sha256"] == _sha256(tmp_path / "prompts.csv") != first_sha


def test_an_edited_row_replays_its_latest_version_and_says_the_earlier_one_is_left_out(tmp_path: Path) -> None:
    write_csv(tmp_path / "prompts.csv", [{"prompt_id": "a", "prompt": "a red kite", "seed": "41"}])
    spec_path = _spec(tmp_path, variants=2)
    generate(spec_path)
    write_csv(tmp_path / "prompts.csv", [{"prompt_id": "a", "prompt": "a blue kite\nat dusk, \"quoted\"  "}])
    _, lineage = generate(spec_path)
    result = replay(lineage, tmp_path / "replayed")
    assert any("earlier version" in n for n in result.notes)
    tasks = build_plan(load_spec(result.spec_path)).tasks
    assert {t.prompt for t in tasks} == {"a blue kite\nat dusk, \"quoted\"  "}
    assert [t.seed_source for t in tasks] == ["derived", "derived"] and result.table_path.suffix == ".csv"


def test_a_prompt_with_a_carriage_return_is_replayed_through_a_parquet_table(tmp_path: Path) -> None:
    prompts = {"prompt_id": ["cr"], "prompt": ["line one\r\nline two"], "seed": ["5"], "note": ["kept"]}
    pq.write_table(pa.table(prompts), tmp_path / "prompts.parquet")
    _, lineage = generate(_spec(tmp_path, prompts="prompts.parquet"))
    result = replay(lineage, tmp_path / "replayed")
    assert result.table_path.name == "prompts.parquet"
    (task,) = build_plan(load_spec(result.spec_path)).tasks
    assert task.prompt == "line one\r\nline two" and task.seed == 5 and task.extra == {"note": "kept"}


def test_retargeting_maps_the_same_neutral_parameters_or_refuses_like_validate(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    _, lineage = generate(tmp_path / "examples" / "demo.yaml")
    moved = replay(lineage, tmp_path / "to_dashscope", provider="dashscope", model="wan2.7-image")
    assert moved.retargeted and moved.outputs == moved.planned
    plan = build_plan(load_spec(moved.spec_path))
    rows = pq.read_table(lineage).to_pylist()
    recorded = {(r["prompt_id"], r["variant"]): json.loads(r["params_json"]) for r in rows}
    assert {(t.prompt_id, t.variant): t.params.effective() for t in plan.tasks} == recorded
    # EvoLink has no watermark switch: refused, naming the row and the column, as `validate` would; nothing is left.
    with pytest.raises(InvalidInput) as refused:
        replay(lineage, tmp_path / "to_evolink", provider="evolink", model="wan-2.7-image")
    assert {p.column for p in refused.value.problems} == {"watermark"}
    assert not (tmp_path / "to_evolink" / "spec.yaml").exists()

def test_replay_refuses_a_missing_reference_and_a_used_directory(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    _, lineage = generate(tmp_path / "examples" / "rivya_video.yaml")
    alone = lineage_alone(lineage, tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "examples")
    with pytest.raises(InvalidInput) as missing:
        replay(alone, tmp_path / "replayed")
    assert any("harbor.png" in p.reason for p in missing.value.problems)
    # Beside its storage the lineage finds the copies the run kept (references/<sha256>), checked by hash.
    kept = replay(lineage, tmp_path / "from_storage")
    assert kept.outputs == kept.planned and len(kept.references) == 3
    assert {_sha256(p) for p in kept.references} == {p.stem for p in kept.references}
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "spec.yaml").write_text("name: x\n", encoding="utf-8")
    with pytest.raises(InvalidInput):
        replay(alone, tmp_path / "used")


def _spec(tmp_path: Path, **fields: Any) -> Path:
    import yaml

    spec = {"name": "kites", "prompts": "prompts.csv", "provider": "rivya", "model": "wan-2-7-image",
            "endpoint": "emulator", "seed": 11, "storage": "./out", **fields}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()



def test_the_card_counts_hosts_modes_spend_and_seeds_from_the_lineage_alone(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    _, lineage = generate(tmp_path / "examples" / "demo.yaml")
    rows = pq.read_table(lineage).to_pylist()
    card = (lineage.parent / "DATASET.md").read_text(encoding="utf-8")
    assert card == card_for_lineage_file(lineage)  # a function of the lineage file alone
    files = sum(r["status"] == "succeeded" for r in rows)
    assert f"| rivya | wan-2-7-image | {files} | {len(rows)} |" in card
    assert f"| text_to_image | {files} |" in card
    credits = sum(r["credits_final"] for r in rows)
    assert f"| **total** | {credits:.6g} |" in card
    derived = len({r["identity"] for r in rows if r["seed_source"] == "derived"})
    from_table = len({r["identity"] for r in rows if r["seed_source"] == "row"})
    assert derived and from_table
    assert f"- {derived} derived from master seed `{load_spec(tmp_path / 'examples' / 'demo.yaml').seed}`" in card
    assert f"- {from_table} from the table's own `seed` column" in card
    assert "wan-pipeline replay lineage/lineage.parquet --out demo_replay" in card


def test_a_plan_reused_in_process_still_names_the_spec_file_it_was_planned_from(tmp_path: Path) -> None:
    from wan_pipeline.planning.plan_cache import clear, plan_for

    write_csv(tmp_path / "prompts.csv", [{"prompt_id": "a", "prompt": "a red kite"}])
    spec_path = _spec(tmp_path)
    clear()
    before = plan_for(load_spec(spec_path)).tasks[0].provenance
    spec_path.write_text("# only a comment changed\n" + spec_path.read_text(encoding="utf-8"), encoding="utf-8")
    after = plan_for(load_spec(spec_path)).tasks[0].provenance
    assert before.spec_sha256 != after.spec_sha256 == _sha256(spec_path)
    assert before.table_sha256 == after.table_sha256 == _sha256(tmp_path / "prompts.csv")
    clear()
