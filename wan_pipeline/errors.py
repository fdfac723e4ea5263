"""The error taxonomy of DESIGN §9.

Every failure the pipeline can meet is one of these classes; the engine decides what to do (retry,
wait, stop submitting, resubmit, give up) from the class alone, never from message strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input: where it is and why."""

    file: str
    #: where in the file: the line (a CSV table or the YAML spec; the header is line 1), or for a Parquet
    #: table, which has no lines, the 1-based row
    row: int | None
    column: str | None
    reason: str

    @property
    def unit(self) -> str:
        """'line' in a text file, 'row' in a Parquet table."""
        return "row" if self.file.lower().endswith(".parquet") else "line"

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", {self.unit} {self.row}"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.reason}"


class WanPipelineError(Exception):
    """Base of everything this package raises on purpose."""


class InvalidInput(WanPipelineError):
    """Our own validation failed before anything was spent; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the input:\n{lines}")


class ConfigError(WanPipelineError):
    """The configuration (environment, spec-level settings) cannot work; nothing was spent."""


@dataclass
class ProviderError(WanPipelineError):
    """An error reported by (or on the way to) a provider, already classified."""

    code: str
    message: str
    http_status: int | None = None
    retry_after_s: float | None = None
    details: dict[str, object] = field(default_factory=dict)

    #: may the same request be sent again (with the same idempotency key)?
    retryable = False
    #: does this error stop every further submission of the run?
    stops_submissions = False

    def __post_init__(self) -> None:
        Exception.__init__(self, f"{self.code}: {self.message}")

    def __str__(self) -> str:
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        return f"{type(self).__name__}{status} {self.code}: {self.message}"


class RejectedByProvider(ProviderError):
    """4xx the provider will answer the same way again: a bug in our mapping or an unsupported value."""


class AuthenticationFailed(RejectedByProvider):
    """Missing, invalid, revoked key or missing scope: no submission can succeed."""

    stops_submissions = True


class IdempotencyConflict(RejectedByProvider):
    """The same idempotency key was used with another body: never resolved by retrying."""


class InsufficientCredits(ProviderError):
    """The account cannot pay: stop submitting anything, keep polling what is already paid for."""

    stops_submissions = True


class RateLimited(ProviderError):
    """429: wait as told (Retry-After) and send the same request again."""

    retryable = True


class Transient(ProviderError):
    """5xx, dropped connections, timeouts, truncated downloads: back off and retry."""

    retryable = True


class GenerationFailed(ProviderError):
    """The provider ran the task and it failed: resubmit (a new attempt, same seed) up to a limit."""


class ContentRejected(ProviderError):
    """Moderation refused the prompt, an input or the output: permanent for this request."""


class PollDeadline(ProviderError):
    """The task did not finish in time; it stays recorded and is resumed by the next run."""


class AmbiguousSubmission(ProviderError):
    """A create may have reached a host that has no idempotency keys; re-sending could buy it twice."""


class BudgetExceeded(ProviderError):
    """Submitting would pass the spec's budget; nothing was sent."""


class StorageUnavailable(Transient):
    """The storage could not say whether a file is there (auth, throttling, network): not "missing".

    A failed check must never be read as a missing file, which would re-download (or, once the host has
    purged the result, re-buy) an output already paid for and stored; the check is simply asked again later.
    """


class MediaInvalid(ProviderError):
    """A downloaded file does not decode or does not match what was asked (size, MIME, duration)."""

    retryable = True


#: Every provider error type by its name. The ledger stores a failure's class *name* (text survives a
#: process and a database); this registry turns it back into the type, and refuses names it does not know.
ERROR_TYPES: dict[str, type[ProviderError]] = {
    cls.__name__: cls
    for cls in (
        ProviderError,
        RejectedByProvider,
        AuthenticationFailed,
        IdempotencyConflict,
        InsufficientCredits,
        RateLimited,
        Transient,
        GenerationFailed,
        ContentRejected,
        PollDeadline,
        AmbiguousSubmission,
        BudgetExceeded,
        StorageUnavailable,
        MediaInvalid,
    )
}

#: The resume rules of DESIGN §9 by class. Exact types, not subclasses: an AuthenticationFailed is a
#: RejectedByProvider on the wire, but once the key is fixed the same request may succeed.
#: Failures that will not change by asking again with the same request.
PERMANENT: frozenset[type[ProviderError]] = frozenset({ContentRejected, RejectedByProvider, IdempotencyConflict})
#: Failures after which the provider may hold (and bill) a task we never heard about: the same key must be
#: reused, and such an attempt without a task id still counts against the budget. StorageUnavailable is one:
#: our storage, not the host, failed to answer, so the host's task may well have succeeded — it is looked up
#: and fetched again, never bought anew (a "settled" failure would start a new attempt with a new key).
AMBIGUOUS: frozenset[type[ProviderError]] = frozenset(
    {Transient, RateLimited, AmbiguousSubmission, StorageUnavailable}
)
#: Failures that prove the create was not acted on (it was refused before any work).
DEFINITELY_NOT_SENT: frozenset[type[ProviderError]] = frozenset(
    {RateLimited, BudgetExceeded, InsufficientCredits, AuthenticationFailed}
)


def error_type(name: str | None) -> type[ProviderError] | None:
    """The error type a ledger row names (None for no recorded failure)."""
    if name is None:
        return None
    try:
        return ERROR_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown error class {name!r} in the ledger") from None


def names(types: frozenset[type[ProviderError]]) -> tuple[str, ...]:
    """The stored names of a set of types, sorted (for SQL and for stable messages)."""
    return tuple(sorted(t.__name__ for t in types))


def rebuild(name: str | None, code: str | None, message: str | None) -> ProviderError:
    """A recorded failure as the error it was."""
    cls = error_type(name) or ProviderError
    return cls(code=code or "failed", message=message or "")
