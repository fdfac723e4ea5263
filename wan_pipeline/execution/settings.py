"""Engine settings: concurrency, pacing, poll schedule, retries. Chosen per deployment (ProviderResource, or
WAN_PIPELINE_<FIELD> in the environment), without Dagster: `generate` starts its first wave before Dagster is
loaded (`cli.head_start`), with the settings its runs' resource gives them."""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class EngineSettings:
    max_concurrency: int = 4
    submits_per_second: float = 2.0
    poll_initial_s: float = 2.5
    poll_max_s: float = 10.0
    poll_growth: float = 1.5
    poll_deadline_s: float = 900.0
    http_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    generation_attempts: int = 2  # per run, per output, for provider-side failures
    download_retries: int = 4
    request_timeout_s: float = 60.0
    poll_deadline_video_s: float = 3600.0
    #: re-send a create that may have reached a host without idempotency keys (explicit opt-in)
    resubmit_ambiguous: bool = False


#: what a deployment sets (the provider resource's fields, each also WAN_PIPELINE_<NAME> in the environment)
DEPLOYMENT_FIELDS = (
    "max_concurrency", "submits_per_second", "poll_initial_s", "poll_max_s", "poll_deadline_s",
    "poll_deadline_video_s", "http_retries", "backoff_base_s", "backoff_max_s", "generation_attempts",
    "resubmit_ambiguous",
)  # fmt: skip
#: limits the host's catalog entry decides unless a deployment sets them (0 or None: not set)
HOST_LIMITS = ("max_concurrency", "submits_per_second")


def settings_for_host(provider: str | None, configured: Mapping[str, object]) -> EngineSettings:
    """Engine settings for `provider`'s host: what `configured` sets (None: not set), the host's declared
    limits for `HOST_LIMITS` not set (0 counts as not set, as it always did: no concurrency would deadlock,
    and a rate of 0 would mean no cap), `EngineSettings`' defaults for everything else."""
    from wan_pipeline.providers.registry import get_provider

    limits = get_provider(provider).default_limits if provider else None
    values = {name: configured[name] for name in DEPLOYMENT_FIELDS if configured.get(name) is not None}
    for name in HOST_LIMITS:
        if not values.get(name):
            values.pop(name, None)
            if limits is not None:
                values[name] = getattr(limits, name)
    return replace(EngineSettings(), **values)  # type: ignore[arg-type]


def configured_in_env(env: Mapping[str, str] | None = None) -> dict[str, int | float | bool]:
    """The deployment fields set as WAN_PIPELINE_<FIELD> (e.g. WAN_PIPELINE_POLL_INITIAL_S=0.2)."""
    env = os.environ if env is None else env
    types = typing.get_type_hints(EngineSettings)
    values: dict[str, int | float | bool] = {}
    for name in DEPLOYMENT_FIELDS:
        raw = env.get(f"WAN_PIPELINE_{name.upper()}")
        if not raw:
            continue
        kind = types[name]
        if kind is bool:
            values[name] = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            values[name] = int(raw) if kind is int else float(raw)
    return values


def settings_from_env(provider: str | None, env: Mapping[str, str] | None = None) -> EngineSettings:
    """What `resources.provider.provider_resource_from_env().settings(provider)` gives, without Dagster."""
    return settings_for_host(provider, configured_in_env(env))

