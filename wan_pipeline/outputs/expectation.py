"""What a planned output should look like once downloaded: kind, aspect, size, duration."""

from __future__ import annotations

from wan_pipeline.outputs.media import Expectation
from wan_pipeline.planning.plan import PlannedTask
from wan_pipeline.providers.catalog import find_model
from wan_pipeline.providers.sizes import image_size, video_size


def expectation(task: PlannedTask) -> Expectation:
    """Outputs that follow an input's geometry (edits, image-to-video) are not held to a size."""
    info = find_model(task.provider, task.model)
    p = task.params
    kind = info.kind if info else "image"
    duration = float(p.duration or (info.default_duration if info and info.default_duration else 0)) or None
    follows_input = task.mode.value.endswith("edit") or task.mode.value == "image_to_video"
    if p.width and p.height:
        return Expectation(kind, None, (p.width, p.height), duration)
    if follows_input:
        return Expectation(kind, None, None, duration if kind == "video" else None)
    aspect = p.aspect_ratio or (info.default_aspect_ratio if info else None)
    gear = p.resolution or (info.default_resolution if info else None)
    if kind == "video":
        size = video_size(aspect, gear) if aspect and gear in ("720p", "1080p") else None
        return Expectation(kind, aspect, size, duration)
    if aspect and gear in ("1K", "2K", "4K"):
        return Expectation(kind, aspect, image_size(aspect, gear))
    return Expectation(kind, aspect)
