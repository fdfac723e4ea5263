"""The dataset spec (DESIGN §3, a contract): a small YAML file naming a prompt table and how to render it."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wan_pipeline.errors import InvalidInput, Problem
from wan_pipeline.providers.params import NeutralParams

ProviderName = Literal["rivya", "evolink", "reapi", "runware", "dashscope"]
NAME_RE = re.compile(r"^[a-z0-9_]+$")
VIDEO_GEARS = ("720p", "1080p")


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_credits: float | None = Field(default=None, gt=0)
    max_usd: float | None = Field(default=None, gt=0)


PerSecond = float | dict[str, float]


class Pricing(BaseModel):
    """What this account pays (DESIGN §3): declared prices win over the catalog's documented ones.

    Per output image and per output second of video (a number, or a map by resolution gear), in USD or
    credits; `usd_per_credit` converts where a host bills in credits.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd_per_image: float | None = Field(default=None, gt=0)
    credits_per_image: float | None = Field(default=None, gt=0)
    usd_per_second: PerSecond | None = None
    credits_per_second: PerSecond | None = None
    usd_per_credit: float | None = Field(default=None, gt=0)

    @field_validator("usd_per_second", "credits_per_second", mode="before")
    @classmethod
    def _per_second(cls, v: Any) -> Any:
        if isinstance(v, dict):
            out: dict[str, Any] = {}
            for key, price in v.items():
                gear = str(key).strip().lower()
                if gear not in VIDEO_GEARS:
                    raise ValueError(f"'{key}' is not a video resolution ({', '.join(VIDEO_GEARS)})")
                out[gear] = price
            return out
        return v

    @field_validator("usd_per_second", "credits_per_second")
    @classmethod
    def _positive(cls, v: PerSecond | None) -> PerSecond | None:
        prices = v.values() if isinstance(v, dict) else [] if v is None else [v]
        if any(p <= 0 for p in prices):
            raise ValueError("prices must be greater than 0")
        return v

    @property
    def declared(self) -> bool:
        return any(getattr(self, name) is not None for name in type(self).model_fields)


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    prompts: str
    provider: ProviderName
    model: str
    endpoint: str | None = None
    variants: int = Field(default=1, ge=1, le=100)
    seed: int = Field(default=0, ge=0, le=2_147_483_647)
    params: NeutralParams = NeutralParams()
    budget: Budget = Budget()
    pricing: Pricing = Pricing()
    storage: str = "./wan_output"

    #: where the spec file lives; relative paths in it resolve against this directory
    base_dir: Path = Field(default=Path("."), exclude=True)
    #: the spec file itself, for error messages
    spec_file: str = Field(default="<spec>", exclude=True)
    #: SHA-256 of the spec file's bytes as loaded (provenance); None for a spec built in code
    source_sha256: str | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must match [a-z0-9_]+ (it names the Dagster asset group and partitions)")
        return v

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: str) -> str:
        if not v.lower().endswith((".csv", ".parquet")):
            raise ValueError("must be a .csv or .parquet file")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is None or v == "emulator":
            return v
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be 'emulator' or a base URL (https://...)")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _storage(self) -> DatasetSpec:
        if self.storage.startswith("s3://") and len(self.storage) <= len("s3://"):
            raise ValueError("storage 's3://' needs a bucket")
        return self

    @property
    def prompts_path(self) -> Path:
        return (self.base_dir / self.prompts).resolve()

    @property
    def is_s3(self) -> bool:
        return self.storage.startswith("s3://")

    @property
    def storage_root(self) -> str:
        """A resolved local directory, or the s3:// URL unchanged."""
        if self.is_s3:
            return self.storage.rstrip("/")
        return str((self.base_dir / self.storage).resolve())

    @property
    def partitions_name(self) -> str:
        return f"{self.name}_prompts"


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a spec file; every problem is reported at once as InvalidInput."""
    p = Path(path)
    file = str(p)
    if not p.is_file():
        raise InvalidInput([Problem(file, None, None, "spec file not found")])
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInput([Problem(file, None, None, f"not valid YAML: {exc}")]) from exc
    if not isinstance(raw, dict):
        raise InvalidInput([Problem(file, None, None, "must be a YAML mapping")])
    return spec_from_mapping(
        raw, p.resolve().parent, file, yaml_text=text, source_sha256=hashlib.sha256(data).hexdigest()
    )


def spec_from_mapping(
    raw: Mapping[str, Any],
    base_dir: Path,
    source: str,
    yaml_text: str | None = None,
    source_sha256: str | None = None,
) -> DatasetSpec:
    """Validate spec fields (a spec file's, or given inline in a Dagster component's defs.yaml); relative
    paths resolve against `base_dir`, problems name `source` (and their line, when `yaml_text` is the
    file's text). Every problem is reported at once as InvalidInput. Provenance: `source_sha256` is the
    file's digest; for inline fields, the digest of their canonical JSON."""
    if source_sha256 is None:
        canonical = json.dumps(dict(raw), sort_keys=True, default=str, ensure_ascii=False)
        source_sha256 = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    try:
        return DatasetSpec.model_validate(
            {**raw, "base_dir": base_dir.resolve(), "spec_file": source, "source_sha256": source_sha256}
        )
    except ValidationError as exc:
        root = yaml.compose(yaml_text) if yaml_text is not None else None
        raise InvalidInput(
            [
                Problem(source, _line_of(root, e["loc"]), _field_path(e["loc"]), e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            ]
        ) from exc


@dataclass(frozen=True)
class SpecSource:
    """Where a dataset's spec comes from: a spec file, re-read on every use so edits apply without a reload,
    or fields given inline (fixed when the code location loads)."""

    path: Path | None = None
    inline: Mapping[str, Any] | None = None
    base_dir: Path = Path(".")
    label: str = "<inline spec>"

    @classmethod
    def from_file(cls, path: str | Path) -> SpecSource:
        resolved = Path(path).resolve()
        return cls(path=resolved, base_dir=resolved.parent, label=str(path))

    def load(self) -> DatasetSpec:
        if self.path is not None:
            return load_spec(self.path)
        return spec_from_mapping(self.inline or {}, self.base_dir, self.label)

    def fingerprint_bytes(self) -> bytes:
        """What the spec says, as bytes: a change means the dataset may have changed (the new-prompts sensor)."""
        if self.path is not None:
            return self.path.read_bytes()
        return json.dumps(dict(self.inline or {}), sort_keys=True, default=str).encode()


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(x) for x in loc)


def spec_line(spec: DatasetSpec, field: str) -> int | None:
    """The line of a (dotted) field in the spec file, for problems found after loading (None if absent)."""
    try:
        root = yaml.compose(Path(spec.spec_file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return _line_of(root, tuple(field.split(".")))


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The line of the YAML node a validation error points at (the deepest one that exists), so an editor
    finds it; None for an error about the file as a whole."""
    line = None
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
            if child is not None:
                line = next(k for k, v in node.value if v is child).start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
