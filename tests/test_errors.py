"""errors.py: the registry that turns a stored class name back into its type, and the resume sets built on it."""

from __future__ import annotations

import pytest

from wan_pipeline import errors as e
from wan_pipeline.money import ledger


def all_subclasses(cls: type[e.ProviderError]) -> set[type[e.ProviderError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= all_subclasses(sub)
    return found


def test_every_provider_error_type_is_registered_under_its_own_name() -> None:
    declared = {e.ProviderError} | {cls for cls in all_subclasses(e.ProviderError) if cls.__module__ == e.__name__}
    assert set(e.ERROR_TYPES.values()) == declared
    assert all(name == cls.__name__ for name, cls in e.ERROR_TYPES.items())


@pytest.mark.parametrize("name", sorted(e.ERROR_TYPES))
def test_error_type_turns_a_stored_name_back_into_the_type(name: str) -> None:
    cls = e.error_type(name)
    assert cls is not None and cls.__name__ == name and issubclass(cls, e.ProviderError)


def test_no_recorded_failure_has_no_type() -> None:
    assert e.error_type(None) is None


@pytest.mark.parametrize("name", ["Gremlin", "providererror", "ValueError", "WanPipelineError", "ConfigError", ""])
def test_unknown_names_are_refused_not_guessed(name: str) -> None:
    # ConfigError and WanPipelineError exist in the module but are not provider failures a ledger records
    with pytest.raises(ValueError, match="unknown error class"):
        e.error_type(name)


@pytest.mark.parametrize("name", sorted(e.ERROR_TYPES))
def test_rebuild_gives_the_recorded_error_with_its_code_and_message(name: str) -> None:
    err = e.rebuild(name, "some_code", "what the host said")
    assert type(err) is e.ERROR_TYPES[name]
    assert (err.code, err.message) == ("some_code", "what the host said")
    assert str(err) == f"{name} some_code: what the host said"


def test_rebuild_without_details_is_a_plain_provider_error() -> None:
    err = e.rebuild(None, None, None)
    assert type(err) is e.ProviderError
    assert (err.code, err.message) == ("failed", "")


def test_rebuild_of_an_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'Gremlin'"):
        e.rebuild("Gremlin", "x", "y")


def test_rebuilt_errors_keep_their_behaviour() -> None:
    assert e.rebuild("RateLimited", "429", "slow down").retryable
    assert e.rebuild("InsufficientCredits", "quota", "empty").stops_submissions
    assert not e.rebuild("ContentRejected", "nsfw", "no").retryable


def test_the_resume_sets_do_not_overlap() -> None:
    assert not e.AMBIGUOUS & e.PERMANENT
    assert all(cls in e.ERROR_TYPES.values() for cls in e.AMBIGUOUS | e.PERMANENT | e.DEFINITELY_NOT_SENT)


def test_the_ledger_uses_the_one_list_of_ambiguous_errors() -> None:
    # one list (errors.AMBIGUOUS); the ledger's SQL reads its names, sorted, from it
    assert e.names(e.AMBIGUOUS) == ledger.AMBIGUOUS_ERRORS
    assert list(e.names(e.AMBIGUOUS)) == sorted(cls.__name__ for cls in e.AMBIGUOUS)


def test_a_storage_failure_is_ambiguous_and_still_counts_against_the_budget() -> None:
    # a storage error says nothing about the host's task: it may exist (and be billed)
    assert e.StorageUnavailable in e.AMBIGUOUS
    assert "StorageUnavailable" in ledger.AMBIGUOUS_ERRORS
