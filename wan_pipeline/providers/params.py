"""Provider-neutral generation parameters (DESIGN §5, a contract).

A spec's `params` and a table's columns use these names whatever the provider; each provider module
maps them onto its wire format and refuses what it cannot do.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SEED = 2_147_483_647
ASPECT_RE = re.compile(r"^([1-9][0-9]{0,2}):([1-9][0-9]{0,2})$")
HEX_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
RATIO_RE = re.compile(r"^([0-9]{1,3}(?:\.[0-9]{1,2})?)%$")

ImageResolution = Literal["1K", "2K", "4K"]
VideoResolution = Literal["720p", "1080p"]
Box = Annotated[list[int], Field(min_length=4, max_length=4)]


class PaletteColor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hex: str
    ratio: str

    @field_validator("hex")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not HEX_RE.match(v):
            raise ValueError(f"'{v}' is not a #RRGGBB colour")
        return v.upper()

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: str) -> str:
        if not RATIO_RE.match(v):
            raise ValueError(f"'{v}' is not a percentage like '23.51%'")
        return v

    @property
    def percent(self) -> Decimal:
        return Decimal(self.ratio.rstrip("%"))


class NeutralParams(BaseModel):
    """The effective parameters of one output; every field optional, provider defaults apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    negative_prompt: str | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    aspect_ratio: str | None = None
    resolution: Literal["1K", "2K", "4K", "720p", "1080p"] | None = None
    width: int | None = Field(default=None, ge=1, le=16384)
    height: int | None = Field(default=None, ge=1, le=16384)
    n: int | None = Field(default=None, ge=1, le=12)
    watermark: bool | None = None
    thinking: bool | None = None
    sequential: bool | None = None
    prompt_extend: bool | None = None
    color_palette: list[PaletteColor] | None = Field(default=None, min_length=3, max_length=10)
    regions: list[list[Box]] | None = None
    reference_images: list[str] | None = None
    reference_video: str | None = None
    duration: int | None = Field(default=None, ge=1, le=60)
    audio_setting: Literal["auto", "origin"] | None = None
    provider_params: dict[str, Any] | None = None

    @field_validator("aspect_ratio")
    @classmethod
    def _aspect(cls, v: str | None) -> str | None:
        if v is not None and not ASPECT_RE.match(v):
            raise ValueError(f"'{v}' is not an aspect ratio like '16:9'")
        return v

    @field_validator("resolution", mode="before")
    @classmethod
    def _resolution_case(cls, v: Any) -> Any:
        # '2k' and '1080P' are common spellings; the contract's spelling is '2K' / '1080p'.
        if isinstance(v, str):
            upper = v.strip().upper()
            if upper in {"1K", "2K", "4K"}:
                return upper
            if upper in {"720P", "1080P"}:
                return upper.lower()
        return v

    @field_validator("color_palette")
    @classmethod
    def _palette_sum(cls, v: list[PaletteColor] | None) -> list[PaletteColor] | None:
        if v is None:
            return v
        try:
            total = sum((c.percent for c in v), Decimal(0))
        except InvalidOperation as exc:  # pragma: no cover - RATIO_RE already guards this
            raise ValueError("palette ratios must be percentages") from exc
        if total != Decimal("100"):
            raise ValueError(f"palette ratios must sum to 100.00%, not {total}%")
        return v

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: list[list[list[int]]] | None) -> list[list[list[int]]] | None:
        if v is None:
            return v
        for i, boxes in enumerate(v):
            if len(boxes) > 2:
                raise ValueError(f"image {i + 1} has {len(boxes)} boxes; at most 2 are allowed")
            for box in boxes:
                x1, y1, x2, y2 = box
                if min(box) < 0 or x2 <= x1 or y2 <= y1:
                    raise ValueError(f"box {box} must be [x1, y1, x2, y2] with x1<x2, y1<y2, all >= 0")
        return v

    @model_validator(mode="after")
    def _consistency(self) -> NeutralParams:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together")
        if self.width is not None and self.aspect_ratio is not None:
            raise ValueError("give either width/height or aspect_ratio, not both")
        if self.regions is not None and len(self.regions) != len(self.reference_images or []):
            raise ValueError("regions must have one entry per reference image")
        return self

    def effective(self) -> dict[str, Any]:
        """The parameters that are set, JSON-ready, in a stable order (they feed the fingerprint)."""
        return self.model_dump(mode="json", exclude_none=True)

    def merged(self, override: NeutralParams) -> NeutralParams:
        """Spec defaults overridden by a row's own values.

        A default never conflicts with a row's explicit choice: where the row sets one side of a mutually
        exclusive group (an explicit width/height versus an aspect_ratio × resolution gear), the spec's
        defaults for the other side are dropped for that row.
        """
        data = self.model_dump(exclude_none=True)
        mine = override.model_dump(exclude_none=True)
        for group in EXCLUSIVE_GROUPS:
            if group & mine.keys():
                for other in EXCLUSIVE_GROUPS:
                    if other is not group:
                        for name in other - mine.keys():
                            data.pop(name, None)
        data.update(mine)
        return NeutralParams.model_validate(data)


#: column names that are parameters (everything else in a table row is user metadata)
PARAM_NAMES: frozenset[str] = frozenset(NeutralParams.model_fields)
#: sides of a choice a row makes as a whole: setting one side drops the spec's defaults for the others
EXCLUSIVE_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"width", "height"}),
    frozenset({"aspect_ratio", "resolution"}),
)
#: parameters whose CSV cells hold JSON
JSON_PARAMS: frozenset[str] = frozenset({"color_palette", "regions", "reference_images", "provider_params"})
BOOL_PARAMS: frozenset[str] = frozenset({"watermark", "thinking", "sequential", "prompt_extend"})
INT_PARAMS: frozenset[str] = frozenset({"seed", "width", "height", "n", "duration"})
