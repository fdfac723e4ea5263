"""The provider resource: engine settings chosen per deployment, never API keys.

Keys are read from the environment at execution time (DESIGN §6 names the variables) and go only
into request headers; keeping them out of resource config keeps them out of Dagster's run records.
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from wan_pipeline.execution.settings import EngineSettings
from wan_pipeline.providers.registry import get_provider


class ProviderResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Talks to the spec's Wan 2.7 host through the task engine (retries, rate limits, ledger, budget)."""

    max_concurrency: int | None = Field(
        default=None, description="tasks in flight at once inside one run (default: the host's, from the catalog)"
    )
    submits_per_second: float | None = Field(
        default=None, description="submission rate cap (default: the host's, from the catalog)"
    )
    poll_initial_s: float = Field(default=2.5, description="first poll delay; grows to poll_max_s")
    poll_max_s: float = Field(default=10.0)
    poll_deadline_s: float = Field(default=900.0, description="image tasks: after this a task is left for the next run")
    poll_deadline_video_s: float = Field(default=3600.0, description="video tasks: the same, longer")
    http_retries: int = Field(default=6, description="retries of one HTTP call on 429/5xx/network errors")
    backoff_base_s: float = Field(default=1.0)
    backoff_max_s: float = Field(default=30.0)
    generation_attempts: int = Field(default=2, description="attempts per output per run on provider failures")
    resubmit_ambiguous: bool = Field(
        default=False, description="re-send creates that may have landed on hosts without idempotency keys"
    )

    def settings(self, provider: str | None = None) -> EngineSettings:
        """Engine settings for `provider`'s host: limits not configured here come from its declared defaults."""
        limits = get_provider(provider).default_limits if provider else None
        fallback = EngineSettings()
        return EngineSettings(
            max_concurrency=self.max_concurrency or (limits.max_concurrency if limits else fallback.max_concurrency),
            submits_per_second=self.submits_per_second
            or (limits.submits_per_second if limits else fallback.submits_per_second),
            poll_initial_s=self.poll_initial_s,
            poll_max_s=self.poll_max_s,
            poll_deadline_s=self.poll_deadline_s,
            poll_deadline_video_s=self.poll_deadline_video_s,
            http_retries=self.http_retries,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            generation_attempts=self.generation_attempts,
            resubmit_ambiguous=self.resubmit_ambiguous,
        )


def provider_resource_from_env() -> ProviderResource:
    """Defaults, overridable with WAN_PIPELINE_<FIELD> (e.g. WAN_PIPELINE_POLL_INITIAL_S=0.2)."""
    values: dict[str, float | int | bool] = {}
    for name, field in ProviderResource.model_fields.items():
        raw = os.environ.get(f"WAN_PIPELINE_{name.upper()}")
        if not raw:
            continue
        if field.annotation is bool:
            values[name] = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            values[name] = int(raw) if field.annotation in (int, int | None) else float(raw)
    return ProviderResource(**values)  # type: ignore[arg-type]
