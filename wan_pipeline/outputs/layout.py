"""Where an output lives under the storage root (DESIGN §8: media under `media/`)."""

from __future__ import annotations

from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.planning.table import safe_name
from wan_pipeline.providers.mediatypes import EXTENSIONS


def media_relpath(task: PlannedTask, index: int, mime: str) -> str:
    """`media/<prompt>/<prompt>__v<variant>__<index>__<fingerprint[:10]><ext>`: stable across runs."""
    ext = EXTENSIONS.get(mime, ".bin")
    name = safe_name(task.prompt_id)
    return f"media/{name}/{name}__v{task.variant}__{index}__{task.fingerprint[:10]}{ext}"


def reference_relpath(sha256: str | None, mime: str | None) -> str:
    """Reference files, stored by content so a renamed file is the same object."""
    return f"references/{sha256}{EXTENSIONS.get(mime or '', '')}"
