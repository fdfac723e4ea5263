"""The provider resource: engine settings chosen per deployment, never API keys.

Keys are read from the environment at execution time (DESIGN §6 names the variables) and go only
into request headers; keeping them out of resource config keeps them out of Dagster's run records.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from wan_pipeline.execution.settings import DEPLOYMENT_FIELDS, EngineSettings, configured_in_env, settings_for_host

_DEFAULTS = EngineSettings()


class ProviderResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Talks to the spec's Wan 2.7 host through the task engine (retries, rate limits, ledger, budget).

    Its fields are `execution.settings.DEPLOYMENT_FIELDS`, with `EngineSettings`' defaults."""

    max_concurrency: int | None = Field(
        default=None, description="tasks in flight at once inside one run (default: the host's, from the catalog)"
    )
    submits_per_second: float | None = Field(
        default=None, description="submission rate cap (default: the host's, from the catalog)"
    )
    poll_initial_s: float = Field(default=_DEFAULTS.poll_initial_s, description="first poll delay; grows to poll_max_s")
    poll_max_s: float = Field(default=_DEFAULTS.poll_max_s)
    poll_deadline_s: float = Field(
        default=_DEFAULTS.poll_deadline_s, description="image tasks: after this a task is left for the next run"
    )
    poll_deadline_video_s: float = Field(
        default=_DEFAULTS.poll_deadline_video_s, description="video tasks: the same, longer"
    )
    http_retries: int = Field(
        default=_DEFAULTS.http_retries, description="retries of one HTTP call on 429/5xx/network errors"
    )
    backoff_base_s: float = Field(default=_DEFAULTS.backoff_base_s)
    backoff_max_s: float = Field(default=_DEFAULTS.backoff_max_s)
    generation_attempts: int = Field(
        default=_DEFAULTS.generation_attempts, description="attempts per output per run on provider failures"
    )
    resubmit_ambiguous: bool = Field(
        default=_DEFAULTS.resubmit_ambiguous,
        description="re-send creates that may have landed on hosts without idempotency keys",
    )

    def settings(self, provider: str | None = None) -> EngineSettings:
        """Engine settings for `provider`'s host: limits not configured here come from its declared defaults."""
        return settings_for_host(provider, {name: getattr(self, name) for name in DEPLOYMENT_FIELDS})


def provider_resource_from_env() -> ProviderResource:
    """Defaults, overridable with WAN_PIPELINE_<FIELD> (e.g. WAN_PIPELINE_POLL_INITIAL_S=0.2)."""
    return ProviderResource(**configured_in_env())  # type: ignore[arg-type]
