"""Provider name → provider module. Adding a provider touches its module, this table and the catalog."""

from __future__ import annotations

from wan_pipeline.errors import ConfigError

# -- provider imports --
from wan_pipeline.providers import dashscope, evolink, reapi, rivya, runware
from wan_pipeline.providers.base import Provider

PROVIDERS: dict[str, Provider] = {
    rivya.PROVIDER.name: rivya.PROVIDER,
    reapi.PROVIDER.name: reapi.PROVIDER,
    evolink.PROVIDER.name: evolink.PROVIDER,
    runware.PROVIDER.name: runware.PROVIDER,
    dashscope.PROVIDER.name: dashscope.PROVIDER,
    # -- provider entries --
}


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"provider '{name}' is not implemented yet (available: {known})") from None
