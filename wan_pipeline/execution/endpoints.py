"""Which base URL and key a spec talks to (DESIGN §6): env var, then the spec's endpoint, then the real host.

This module is also the one seam between production code and the emulator: `endpoint: emulator` is served
by ``in_process_emulator`` below, and nothing else in the package outside ``cli/`` imports
``wan_pipeline.emulator`` (tests/test_layers.py holds that). The imports are deferred so a run against a
real host never loads the emulator (Starlette, the renderers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from wan_pipeline.errors import ConfigError
from wan_pipeline.outputs.thumbnails import THUMBNAILS_FILE
from wan_pipeline.planning.spec import DatasetSpec
from wan_pipeline.providers.registry import get_provider

if TYPE_CHECKING:
    from wan_pipeline.emulator.state import EmulatorConfig

#: the token the in-process emulator gets when no key is set (it accepts any non-empty token)
EMULATOR_TOKEN = "emulator-local-token"


@dataclass(frozen=True)
class Endpoint:
    provider: str
    base_url: str
    in_process: bool
    # repr=False: an Endpoint may be logged or shown in an error; the key must never be.
    api_key: str = field(repr=False)

    def describe(self) -> str:
        return "in-process emulator" if self.in_process else self.base_url


def resolve_endpoint(spec: DatasetSpec, env: Mapping[str, str] | None = None) -> Endpoint:
    env = os.environ if env is None else env
    provider = get_provider(spec.provider)
    key = env.get(provider.key_env) or None
    base = env.get(provider.base_env) or None
    if base:
        source = f"${provider.base_env}"
    elif spec.endpoint == "emulator":
        from wan_pipeline.emulator.app import IN_PROCESS_BASE

        return Endpoint(spec.provider, IN_PROCESS_BASE, True, key or EMULATOR_TOKEN)
    elif spec.endpoint:
        base, source = spec.endpoint, "the spec's endpoint"
    else:
        base, source = provider.default_base, "the default host"
    if not base.startswith(("https://", "http://")):
        raise ConfigError(f"{source} must be an http(s) base URL")
    if not key:
        raise ConfigError(
            f"{spec.provider} at {base} ({source}) needs an API key: set the environment variable {provider.key_env}"
        )
    return Endpoint(spec.provider, base.rstrip("/"), False, key)


def state_dir(spec: DatasetSpec, env: Mapping[str, str] | None = None) -> Path:
    """Where the ledger (and the in-process emulator's state) live: always local disk."""
    env = os.environ if env is None else env
    if env.get("WAN_PIPELINE_STATE_DIR"):
        return Path(env["WAN_PIPELINE_STATE_DIR"]) / spec.name
    if not spec.is_s3:
        return Path(spec.storage_root) / "_state"
    return Path.home() / ".local" / "state" / "wan_pipeline" / spec.name


def thumbnails_path(spec: DatasetSpec) -> Path:
    """The gallery's thumbnails (`outputs.thumbnails`), kept beside the ledger."""
    return state_dir(spec) / THUMBNAILS_FILE


def emulator_config_for(spec: DatasetSpec, env: Mapping[str, str] | None = None) -> EmulatorConfig:
    """The in-process emulator keeps its state beside the ledger, so it outlives the process like a real host.

    ``$WAN_PIPELINE_EMULATOR`` (JSON) overrides its settings (queue/process times, faults) for demos and tests.
    """
    from wan_pipeline.emulator.state import EmulatorConfig

    env = os.environ if env is None else env
    overrides = json.loads(env.get("WAN_PIPELINE_EMULATOR", "{}") or "{}")
    return EmulatorConfig.model_validate({**overrides, "state_path": str(state_dir(spec, env) / "emulator_state.json")})


def in_process_emulator(spec: DatasetSpec) -> tuple[str, httpx.AsyncBaseTransport]:
    """(base URL, transport) of the emulator speaking the spec's provider protocol inside this process."""
    from wan_pipeline.emulator.app import IN_PROCESS_BASE, in_process

    _, transport = in_process(emulator_config_for(spec), spec.provider)
    return IN_PROCESS_BASE, transport
