"""Prices: what one output costs before it is made, and what a host's reported usage costs after.

Declared prices (the spec's `pricing:`, what this account pays) win over the catalog's documented ones.
Every figure says where it came from (lineage `cost_source`, DESIGN §3): `declared`, `documented`,
`reported` (the host's own figure, or the units it billed priced at the submitted model's price) or
`learned` (a price the host revealed by its charges, see `money.budget`).
"""

from __future__ import annotations

from typing import Literal

from wan_pipeline.planning.spec import Pricing
from wan_pipeline.providers.base import Estimate, Provider, Usage
from wan_pipeline.providers.catalog import ModelInfo, find_model
from wan_pipeline.providers.params import NeutralParams

CostSource = Literal["declared", "documented", "reported", "learned"]
DECLARED: CostSource = "declared"
DOCUMENTED: CostSource = "documented"
REPORTED: CostSource = "reported"
LEARNED: CostSource = "learned"

#: group mode makes "up to n" images, at most 12 (DESIGN §5): an estimate without n assumes the maximum
GROUP_MAX_OUTPUTS = 12


def estimate_task(pricing: Pricing, provider: Provider, model: str, params: NeutralParams) -> Estimate:
    """Credits and USD of one task before it is sent: declared prices, else the provider's documented ones
    (converted with a declared `usd_per_credit` where only one currency is documented)."""
    info = find_model(provider.name, model)
    declared = _declared(pricing, info, params) if info is not None else None
    if declared is not None:
        return declared
    doc = provider.estimate(model, params)
    rate = pricing.usd_per_credit
    if rate is not None and doc.usd is None and doc.credits is not None:
        return Estimate(doc.credits, round(doc.credits * rate, 6), DECLARED)
    if rate is not None and doc.credits is None and doc.usd is not None:
        return Estimate(round(doc.usd / rate, 6), doc.usd, DECLARED)
    if doc.credits is None and doc.usd is None:
        return Estimate(None, None, None)
    return Estimate(doc.credits, doc.usd, DOCUMENTED)


def output_units(info: ModelInfo, params: NeutralParams) -> tuple[float, str | None] | None:
    """What one task is billed on: (images, None), or (video seconds, gear); None when unknown before
    sending (a video edit keeps its input's length)."""
    count = params.n or (GROUP_MAX_OUTPUTS if params.sequential else 1)
    if info.kind == "image":
        return float(count), None
    seconds = params.duration or info.default_duration
    if seconds is None:
        return None
    return float(seconds * (params.n or 1)), params.resolution or info.default_resolution


def _declared(pricing: Pricing, info: ModelInfo, params: NeutralParams) -> Estimate | None:
    units = output_units(info, params)
    if units is None:
        return None
    amount, gear = units
    if info.kind == "image":
        usd_rate, credit_rate = pricing.usd_per_image, pricing.credits_per_image
    else:
        usd_rate, credit_rate = _per_second(pricing.usd_per_second, gear), _per_second(pricing.credits_per_second, gear)
    if usd_rate is None and credit_rate is None:
        return None
    usd = None if usd_rate is None else round(usd_rate * amount, 6)
    credits = None if credit_rate is None else round(credit_rate * amount, 6)
    per_credit = pricing.usd_per_credit or info.usd_per_credit
    if usd is None and credits is not None and per_credit is not None:
        usd = round(credits * per_credit, 6)
    if credits is None and usd is not None and per_credit is not None:
        credits = round(usd / per_credit, 6)
    return Estimate(credits, usd, DECLARED)


def _per_second(price: float | dict[str, float] | None, gear: str | None) -> float | None:
    if price is None or isinstance(price, int | float):
        return price
    return price.get(gear or "")


def usage_cost(pricing: Pricing, provider: str, model: str, usage: Usage) -> Estimate:
    """The reported units of a finished task priced at the submitted model's price (declared, else
    documented): DashScope's `usage.image_count` × the model's per-image price, or billed seconds × the
    per-second price of the billed gear."""
    info = find_model(provider, model)
    if info is None:
        return Estimate(None, None, None)
    if usage.images is not None:
        usd_rate = pricing.usd_per_image if pricing.usd_per_image is not None else info.usd_per_output
        credit_rate = pricing.credits_per_image if pricing.credits_per_image is not None else info.credits_per_output
        amount = usage.images
    elif usage.seconds is not None:
        usd_rate = _per_second(pricing.usd_per_second, usage.resolution)
        if usd_rate is None:
            usd_rate = (info.usd_per_second or {}).get(usage.resolution or "")
        credit_rate = _per_second(pricing.credits_per_second, usage.resolution)
        amount = usage.seconds
    else:
        return Estimate(None, None, None)
    usd = None if usd_rate is None else round(usd_rate * amount, 6)
    credits = None if credit_rate is None else round(credit_rate * amount, 6)
    return Estimate(credits, usd, REPORTED if usd is not None or credits is not None else None)


def per_image_settlement(reserved: float | None, requested: int, usage: Usage | None) -> float | None:
    """A host that pre-charges on the requested image count and settles on the images produced (EvoLink):
    the final charge is the reservation per requested image × images produced."""
    if reserved is None or usage is None or usage.images is None or requested < 1:
        return None
    return round(reserved / requested * usage.images, 6)


def pricing_key(info: ModelInfo, unit: Literal["usd", "credits"]) -> str:
    """The `pricing:` key that would let a budget in `unit` bind for this model."""
    per = "image" if info.kind == "image" else "second"
    return f"pricing.{unit}_per_{per}"


def usd_per_credit(provider: str, model: str) -> float | None:
    """The documented USD value of one credit on this host, if any."""
    info = find_model(provider, model)
    return None if info is None else info.usd_per_credit
