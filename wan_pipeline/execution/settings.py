"""Engine settings: concurrency, pacing, poll schedule, retries. Chosen per deployment (ProviderResource)."""

from __future__ import annotations

from dataclasses import dataclass


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
