"""A request's fingerprint: what the provider is asked to do, as canonical JSON, hashed.

The fingerprint is part of every output's identity (DESIGN §9), so its bytes must never change: the same
provider, model, prompt, effective parameters and reference contents always hash to the same 32 hex digits.
`fingerprint` is the definition. `FingerprintTemplate` computes the same digest for the many outputs that
share everything but their prompt and seed (a large table repeats a few parameter combinations), without
serialising the whole request for each of them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from wan_pipeline.providers.base import Reference
from wan_pipeline.providers.params import NeutralParams

#: left out of the hashed parameters: files count by content (the references' SHA-256), so a rename is no change
_PATH_PARAMS = ("reference_images", "reference_video")
#: json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")), without building an encoder per call
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


# Placeholders for the template's holes, and how canonical JSON writes them (NUL is always escaped there); a
# template whose other content happens to contain one falls back to the full serialisation.
_SEED_HOLE, _PROMPT_HOLE = "\x00wan-pipeline:seed\x00", "\x00wan-pipeline:prompt\x00"
_SEED_JSON, _PROMPT_JSON = canonical_json(_SEED_HOLE), canonical_json(_PROMPT_HOLE)


def hashed_params(effective: dict[str, Any]) -> dict[str, Any]:
    """The parameters a fingerprint covers: the effective ones without reference paths."""
    return {k: v for k, v in effective.items() if k not in _PATH_PARAMS}


def fingerprint(provider: str, model: str, prompt: str, params: NeutralParams, refs: tuple[Reference, ...]) -> str:
    """What the provider is asked to do, hashed: files by content, not by path."""
    return _digest(canonical_json(_content(provider, model, prompt, hashed_params(params.effective()), refs)))


def _content(provider: str, model: str, prompt: Any, hashed: dict[str, Any], refs: tuple[Reference, ...]) -> Any:
    return {
        "provider": provider,
        "model": model,
        "prompt": prompt,
        "params": hashed,
        "references": [r.sha256 or r.source for r in refs],
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class FingerprintTemplate:
    """`fingerprint` for outputs that differ only in prompt and seed, by filling two holes in one serialisation.

    Canonical JSON sorts keys, so where the seed and the prompt go never depends on their values; a prompt is
    encoded as `json.dumps` encodes any string, and a seed as the integer's digits — byte for byte what the full
    serialisation writes (tests/test_planning_fast.py compares the two).
    """

    def __init__(self, provider: str, model: str, params: NeutralParams, refs: tuple[Reference, ...]) -> None:
        self._hashed = hashed_params(params.effective())
        self._fixed = (provider, model, refs)
        text = canonical_json(_content(provider, model, _PROMPT_HOLE, {**self._hashed, "seed": _SEED_HOLE}, refs))
        self._parts: tuple[str, str, str] | None = None
        once = text.count(_SEED_JSON) == 1 and text.count(_PROMPT_JSON) == 1
        if once and text.index(_SEED_JSON) < text.index(_PROMPT_JSON):
            head, rest = text.split(_SEED_JSON)
            middle, tail = rest.split(_PROMPT_JSON)
            self._parts = (head, middle, tail)

    def __call__(self, prompt: str, seed: int) -> str:
        if self._parts is None:
            provider, model, refs = self._fixed
            return _digest(canonical_json(_content(provider, model, prompt, {**self._hashed, "seed": seed}, refs)))
        head, middle, tail = self._parts
        return _digest(f"{head}{int(seed)}{middle}{canonical_json(prompt)}{tail}")
