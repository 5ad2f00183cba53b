"""What a call cost, worked out offline from the ``genai-prices`` price table (``fmclient[cost]``).

fmclient keeps no prices of its own: `genai-prices <https://pypi.org/project/genai-prices/>`_
holds historic, tiered and cache read/write prices for every hosted provider, and fmclient maps its
adapter types onto the table's provider ids:

==============  ====================================================================
adapter type    priced as
==============  ====================================================================
``anthropic``   ``anthropic``
``openai``      ``openai``; another server by its ``base_url`` (Mistral, Groq...)
``gemini``      ``google`` (one table for the Developer API and Vertex AI)
``bedrock``     ``aws`` (Bedrock's own prices, cross-region profiles included)
``ollama``      local: zero, no per-token price
``llamacpp``    local: zero, no per-token price
==============  ====================================================================

The config's ``[prices]`` table names the price table for a provider fmclient cannot place (a
gateway in front of OpenAI: ``my-gateway = "openai"``; ``"none"`` for no prices). A server whose
host the table does not know is not guessed at: a self-hosted model can share an id with a hosted
one (``gpt-oss-120b``) without sharing its price.

Both sides count usage the same way: ``input_tokens`` includes cache reads and writes and
``output_tokens`` includes reasoning, with the cache and reasoning counts as parts of them, so
the usage passes over unchanged (no cache token is priced twice). One-hour cache writes are a
part of the writes with their own price (``cache_write_1h_tokens``).

What changes the price of the same tokens is priced too, where the table knows it, and is
otherwise unknown (``None`` with a reason naming it), never the standard price:

* the service tier the provider says it served the call with (OpenAI and Gemini ``flex`` /
  ``priority``, Anthropic ``priority``, Bedrock ``priority`` / ``flex`` / ``reserved``) and
  Anthropic's fast mode (``speed = "fast"``): genai-prices' price variants;
* long-context tiers (a prompt over 200k tokens on Claude Sonnet 4.5 or Gemini 2.5 Pro):
  genai-prices' tiered prices; a host whose table prices a model flat where its maker's table
  has a long-context tier is not trusted above that tier;
* one-hour cache writes on a model the table has no one-hour write price for.

A price that cannot be found is ``None`` with a reason, never zero. Nothing here runs on the path
of a call: a Completion is priced the first time its ``cost`` is read (or at once when the client
has a budget).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fmclient.types import Cost

if TYPE_CHECKING:
    from decimal import Decimal

    from fmclient.types import Usage

__all__ = [
    "Cost",
    "PriceRef",
    "Unpriced",
    "model_prices",
    "price_data_version",
    "price_modifier",
    "price_usage",
    "priced",
    "prices_available",
]

INSTALL_HINT = 'install the price table: pip install "fmclient[cost]"'

# Adapter type -> genai-prices provider id. The mock is priced as the target it answers for.
_PROVIDER_IDS = {"anthropic": "anthropic", "openai": "openai", "gemini": "google", "bedrock": "aws"}
_LOCAL_TYPES = frozenset({"ollama", "llamacpp"})
_OPENAI_HOSTS = ("api.openai.com",)


def zero_cost() -> Cost:
    from decimal import Decimal

    return Cost(Decimal(0), Decimal(0), Decimal(0))


@dataclass(frozen=True, slots=True)
class Unpriced:
    """Why a call has no cost (``Completion.cost_reason`` holds :attr:`reason`)."""

    reason: str


@dataclass(frozen=True, slots=True)
class PriceRef:
    """Where to look a model up: the adapter type, its base URL (for OpenAI-compatible servers)
    and the price table named by the config's ``[prices]`` table, which wins over both."""

    provider_type: str
    base_url: str | None = None
    table: str | None = None


def price_usage(ref: PriceRef, models: tuple[str, ...], usage: Usage, at: float | None) -> Cost | Unpriced:
    """The cost of ``usage``: the first of ``models`` (answered id, then requested id) the table
    prices. ``at`` is the call's time (epoch seconds): prices change, the one in force applies."""
    if ref.table is None and ref.provider_type in _LOCAL_TYPES:
        return zero_cost()
    table = _table()
    if isinstance(table, Unpriced):
        return table
    where = _where(table, ref)
    if isinstance(where, Unpriced):
        return where
    found = _find(table, where, models)
    if isinstance(found, Unpriced):
        return found
    provider, model = found
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(at, tz=timezone.utc) if at is not None else datetime.now(tz=timezone.utc)
    context = price_context(usage)
    refused = _unpriceable(table, provider, model, models, usage, when, context)
    if refused is not None:
        return refused
    # The per-kind rates (_Linear) know no audio or image tokens: a call with some is priced the long way.
    if not context and not (usage.input_audio_tokens or usage.output_audio_tokens or usage.output_image_tokens):
        linear = _linear_prices(table, provider, model, when)
        if linear is not None:
            cost = linear.price(usage)
            if cost is not None:
                return cost
    try:
        priced = model.calc_price(
            _genai_usage(table, usage), provider, genai_request_timestamp=when, price_context=context or None
        )
    except (ValueError, ArithmeticError) as error:
        return Unpriced(f"genai-prices could not price {model.id!r}: {error}")
    return Cost(priced.total_price, priced.input_price, priced.output_price)


def priced(ref: PriceRef, models: tuple[str, ...], at: float, usage: Usage | None) -> tuple[Cost | None, str | None]:
    """(cost, None) or (None, reason): what a result's ``cost`` / ``cost_reason`` read. The engine
    binds the arguments when a call ends; the result calls it on first read."""
    if usage is None:
        return None, "cost unknown: the provider reports no token usage for these images"  # Images only
    found = price_usage(ref, models, usage, at)
    return (None, found.reason) if isinstance(found, Unpriced) else (found, None)


# The names providers give their standard service tier or speed: no price modifier.
_STANDARD = frozenset({"auto", "default", "standard", "unspecified", "on_demand"})


def price_modifier(value: Any) -> str | None:
    """A service tier or speed as a provider reports it (a string or an SDK enum), lower-cased,
    for ``Usage.service_tier`` / ``Usage.speed``; None when it is the standard one or absent."""
    name = getattr(value, "value", value)
    if not isinstance(name, str) or not name:
        return None
    name = name.lower()
    return None if name in _STANDARD else name


def price_context(usage: Usage) -> dict[str, str]:
    """genai-prices' request context for what the provider says changed the price: the service
    tier, fast mode, batch processing (Anthropic reports ``service_tier = "batch"``)."""
    context: dict[str, str] = {}
    tier = price_modifier(usage.service_tier)
    if tier == "batch":
        context["processing"] = "batch"
    elif tier:
        context["service_tier"] = tier
    speed = price_modifier(usage.speed)
    if speed:
        context["speed"] = speed
    return context


def _unpriceable(
    table: _Table,
    provider: Any,
    model: Any,
    models: tuple[str, ...],
    usage: Usage,
    when: Any,
    context: dict[str, str],
) -> Unpriced | None:
    """Why the table cannot give this usage its right price, or None when it can."""
    for key, value in context.items():
        if not _has_variant(provider, model, when, key, value):
            named = "batch processing" if key == "processing" else f"{key} {value!r}"
            return Unpriced(
                f"cost unknown: the call was billed with {named}, and genai-prices {table.version} "
                f"has no such price for {model.id!r}"
            )
    prices = model.get_prices(when, context or None)
    # A table with a (five-minute) write price but no one-hour one would price one-hour writes
    # at the five-minute rate (Anthropic: 1.25x against 2x the input price).
    if (
        usage.cache_write_1h_tokens
        and getattr(prices, "cache_write_mtok", None) is not None
        and getattr(prices, "cache_write_1h_mtok", None) is None
    ):
        return Unpriced(
            f"cost unknown: {usage.cache_write_1h_tokens} tokens were written to a one-hour cache, and "
            f"genai-prices {table.version} has no one-hour cache-write price for {model.id!r}"
        )
    # Image output tokens cost many times a text token (Gemini 3.1 Flash Image: $60 against $3 a
    # million): a table without an image price would bill them as text.
    if usage.output_image_tokens and getattr(prices, "output_image_mtok", None) is None:
        return Unpriced(
            f"cost unknown: {usage.output_image_tokens} image output tokens, and genai-prices "
            f"{table.version} has no image output price for {model.id!r}"
        )
    if usage.input_tokens and not _is_tiered(prices):
        tier = _makers_tier_start(table, provider, models, when)
        if tier is not None and usage.input_tokens > tier[0]:
            return Unpriced(
                f"cost unknown: a {usage.input_tokens}-token prompt is past the long-context price tier "
                f"({tier[0]} tokens) genai-prices {table.version} has for this model on {tier[1]}, "
                f"and it prices {model.id!r} on {provider.id} without that tier"
            )
    return None


def _has_variant(provider: Any, model: Any, when: Any, key: str, value: str) -> bool:
    # genai-prices ignores the request context for a model it found through another provider's
    # table (its fallback): the variant would not apply, so it does not count.
    if not any(model is candidate for candidate in getattr(provider, "models", ())):
        return False
    return any(
        variant.when.get(key) == value and (variant.constraint is None or variant.constraint.active(when))
        for variant in getattr(model, "price_variants", None) or ()
    )


def _is_tiered(prices: Any) -> bool:
    return any(type(value).__name__ == "TieredPrices" for value in vars(prices).values())


# Model makers whose own price table is the reference for the models other hosts resell
# (Claude on Bedrock and Vertex AI), by a word of the model id.
_MAKERS = (("claude", "anthropic"), ("gemini", "google"))


def _maker_refs(model_id: str) -> tuple[str, ...]:
    """A host's model id as its maker names it: ``us.anthropic.claude-x-20250929-v1:0`` and
    ``claude-x@20250929`` -> ``claude-x-20250929``."""
    import re

    ref = model_id.rsplit("anthropic.", 1)[-1]
    ref = re.sub(r"-v\d+(:\d+)?$", "", ref).replace("@", "-")
    return tuple(dict.fromkeys((ref, model_id)))


def _makers_tier_start(table: _Table, provider: Any, models: tuple[str, ...], when: Any) -> tuple[int, str] | None:
    """(lowest long-context tier start, maker) when the maker's own table has a long-context
    tier for a model another host's table prices flat; else None."""
    key = (provider.id, models, when.date())
    if key in table.maker_tiers:
        return table.maker_tiers[key]
    snapshot = table.snapshot()
    found: tuple[int, str] | None = None
    refs = dict.fromkeys(ref for model_id in models if model_id for ref in _maker_refs(model_id))
    for ref in refs:
        maker = next((maker for word, maker in _MAKERS if word in ref.lower()), None)
        if maker is None or maker == provider.id:
            continue
        try:
            maker_provider, maker_model = snapshot.find_provider_model(ref, None, maker, None)
        except LookupError:
            continue
        if maker_provider.id != maker:
            continue  # found through a fallback table: not the maker's price
        for value in vars(maker_model.get_prices(when)).values():
            for tier in getattr(value, "tiers", None) or ():
                if found is None or tier.start < found[0]:
                    found = (tier.start, maker)
        break
    table.maker_tiers[key] = found
    return found


_BATCH = {"processing": "batch"}


def price_batch_usage(
    ref: PriceRef, models: tuple[str, ...], usage: Usage, at: float | None
) -> tuple[Cost | None, str | None]:
    """(cost, note) of a provider batch result: genai-prices' ``processing=batch`` price where the
    table has one; otherwise the standard price, with a note saying so (no discount is made up)."""
    if price_context(usage).get("processing"):
        # Anthropic's results say ``service_tier = "batch"``: the batch price is applied below,
        # the same way as for a provider that does not say it.
        from dataclasses import replace

        usage = replace(usage, service_tier=None)
    standard = price_usage(ref, models, usage, at)
    if isinstance(standard, Unpriced):
        return None, standard.reason
    if ref.table is None and ref.provider_type in _LOCAL_TYPES:
        return standard, None
    table = _table()
    where = None if isinstance(table, Unpriced) else _where(table, ref)
    found = (
        None
        if isinstance(table, Unpriced) or where is None or isinstance(where, Unpriced)
        else _find(table, where, models)
    )
    if isinstance(table, Unpriced) or found is None or isinstance(found, Unpriced):
        return standard, "batch price unknown: cost is at the standard price"
    provider, model = found
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(at, tz=timezone.utc) if at is not None else datetime.now(tz=timezone.utc)
    if not _has_variant(provider, model, when, "processing", "batch"):
        return standard, f"genai-prices has no batch price for {model.id!r}: cost is at the standard price"
    context = {**price_context(usage), **_BATCH}
    refused = _unpriceable(table, provider, model, models, usage, when, context)
    if refused is not None:
        return None, refused.reason
    try:
        priced = model.calc_price(
            _genai_usage(table, usage), provider, genai_request_timestamp=when, price_context=context
        )
    except (ValueError, ArithmeticError, TypeError) as error:
        return standard, f"genai-prices could not price the batch rate of {model.id!r} ({error}): standard price"
    return Cost(priced.total_price, priced.input_price, priced.output_price), None


def model_prices(ref: PriceRef, model: str) -> tuple[Decimal | None, Decimal | None, bool] | Unpriced:
    """Today's input and output price per million tokens of a model (``None`` where the table
    has none, e.g. an embedding model's output), and whether either rises with prompt size
    (tiered: the figures are then the base tier's)."""
    if ref.table is None and ref.provider_type in _LOCAL_TYPES:
        return (zero_cost().input, zero_cost().output, False)
    table = _table()
    if isinstance(table, Unpriced):
        return table
    where = _where(table, ref)
    if isinstance(where, Unpriced):
        return where
    found = _find(table, where, (model,))
    if isinstance(found, Unpriced):
        return found
    from datetime import datetime, timezone
    from decimal import Decimal

    prices = found[1].get_prices(datetime.now(tz=timezone.utc))

    tiered = False

    def base(name: str) -> Decimal | None:
        nonlocal tiered
        value = getattr(prices, name, None)
        if value is not None and not isinstance(value, Decimal):
            tiered = True
            value = getattr(value, "base", None)
        return value if isinstance(value, Decimal) else None

    return base("input_mtok"), base("output_mtok"), tiered


def prices_available() -> Unpriced | None:
    """None when the price table can be used, else why not (loads it: ~0.15 s, once)."""
    table = _table()
    return table if isinstance(table, Unpriced) else None


def price_data_version() -> str | None:
    """``genai-prices X.Y.Z``: the price data in use, or None without the extra."""
    table = _table()
    if isinstance(table, Unpriced):
        return None
    return f"genai-prices {table.version}"


# -- the table, loaded once -------------------------------------------------------------------
class _Table:
    """genai-prices, imported on first use (it takes ~0.15 s: never on ``import fmclient``)."""

    def __init__(self, module: Any, snapshot: Callable[[], Any], usage_class: type[Any]) -> None:
        self.version: str = module.__version__
        self.snapshot = snapshot
        self.usage_class = usage_class
        self.misses: dict[tuple[str | None, str | None, str], str] = {}
        self.linear: dict[tuple[str, str], tuple[Any, _Linear | None]] = {}
        # (where, model ids) -> (the snapshot it was found in, (provider, model)): prices that
        # UpdatePrices swaps in are a new snapshot, so a hit in an old one is looked up again.
        self.found: dict[Any, tuple[Any, tuple[Any, Any]]] = {}
        # (host provider id, model ids, day) -> the maker's lowest long-context tier start
        self.maker_tiers: dict[tuple[str, tuple[str, ...], Any], tuple[int, str] | None] = {}


_loaded: _Table | Unpriced | None = None
_load_lock = threading.Lock()


def _table() -> _Table | Unpriced:
    global _loaded
    if _loaded is None:
        with _load_lock:
            if _loaded is None:
                _loaded = _load()
    return _loaded


def _load() -> _Table | Unpriced:
    if sys.version_info < (3, 11):
        return Unpriced("cost unknown: the price table (genai-prices) needs Python 3.11 or later")
    try:
        import genai_prices
        from genai_prices import data_snapshot
    except ImportError:
        return Unpriced(f"cost unknown: {INSTALL_HINT}")
    return _Table(genai_prices, data_snapshot.get_snapshot, genai_prices.Usage)


def _where(table: _Table, ref: PriceRef) -> tuple[str | None, str | None] | Unpriced:
    """(provider id, provider API URL) for the table's lookup."""
    if ref.table is not None:
        if ref.table in ("none", "local"):
            return Unpriced("cost unknown: the [prices] table says this provider is not priced")
        return (ref.table, None)
    provider_id = _PROVIDER_IDS.get(ref.provider_type)
    if provider_id is None:
        return Unpriced(f"cost unknown: no price table for provider type {ref.provider_type!r}")
    if ref.provider_type == "openai" and ref.base_url:
        host = _host(ref.base_url)
        if host not in _OPENAI_HOSTS:
            # An OpenAI-compatible server has its own prices, if the table knows its host.
            url = f"https://{host}"
            try:
                table.snapshot().find_provider(None, None, url)
            except LookupError:
                return Unpriced(
                    f"cost unknown: genai-prices {table.version} has no prices for the server at {host} "
                    '(a gateway to a priced provider can say which in the config: [prices] <provider> = "openai")'
                )
            return (None, url)
    return (provider_id, None)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "").lower()


def _find(table: _Table, where: tuple[str | None, str | None], models: tuple[str, ...]) -> tuple[Any, Any] | Unpriced:
    provider_id, api_url = where
    hit = table.found.get((where, models))
    if hit is not None and hit[0] is table.snapshot():
        return hit[1]
    snapshot = table.snapshot()
    tried: list[str] = []
    for model in dict.fromkeys(m for m in models if m):
        key = (provider_id, api_url, model)
        miss = table.misses.get(key)
        if miss is None:
            try:
                found = snapshot.find_provider_model(model, None, provider_id, api_url)
                table.found[(where, models)] = (snapshot, found)
                return found  # type: ignore[no-any-return]
            except LookupError as error:
                miss = table.misses[key] = str(error)
        tried.append(miss)
    detail = "; ".join(tried) or "no model id"
    return Unpriced(f"cost unknown: genai-prices {table.version} has no price for it ({detail})")


class _Linear:
    """A model's prices as a price per token of each kind, read off genai-prices' own results.

    genai-prices works a price out unit by unit (~75-500 µs a call). Without tiers its result is
    affine in the token counts, so it is taken once per model and price period, for one token of
    each kind, and every later call is a handful of Decimal products (exact: the same digits).
    """

    __slots__ = ("base", "prices", "rates")

    def __init__(self, prices: Any, base: tuple[Decimal, Decimal], rates: tuple[tuple[Decimal, Decimal], ...]) -> None:
        self.prices = prices  # the genai-prices ModelPrice these were read from
        self.base = base
        self.rates = rates

    def price(self, usage: Usage) -> Cost | None:
        """The cost, or None for counts that do not add up (left to genai-prices to report)."""
        counts = (
            usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens,
            usage.cached_input_tokens,
            usage.cache_write_tokens - usage.cache_write_1h_tokens,
            usage.cache_write_1h_tokens,
            usage.output_tokens - usage.reasoning_tokens,
            usage.reasoning_tokens,
        )
        if min(counts) < 0:
            return None
        input_price, output_price = self.base
        for count, (per_input, per_output) in zip(counts, self.rates, strict=True):
            if count:
                input_price += count * per_input
                output_price += count * per_output
        return Cost(input_price + output_price, input_price, output_price)


# One token of each kind, in the order _Linear.price counts them.
_UNIT_USAGES = (
    {"input_tokens": 1},
    {"input_tokens": 1, "cache_read_tokens": 1},
    {"input_tokens": 1, "cache_write_tokens": 1},
    {"input_tokens": 1, "cache_write_tokens": 1, "cache_write_1h_tokens": 1},
    {"output_tokens": 1},
    {"output_tokens": 1, "output_reasoning_tokens": 1},
)


def _linear_prices(table: _Table, provider: Any, model: Any, when: Any) -> _Linear | None:
    """The model's per-token prices in force at ``when``, or None when they are not linear (tiers)."""
    prices = model.get_prices(when)
    key = (provider.id, model.id)
    found = table.linear.get(key)
    if found is not None and found[0] is prices:
        return found[1]
    linear: _Linear | None = None
    if not _is_tiered(prices):
        try:

            def at(**counts: int) -> tuple[Decimal, Decimal]:
                priced = model.calc_price(table.usage_class(**counts), provider, genai_request_timestamp=when)
                return priced.input_price, priced.output_price

            base = at()
            rates = tuple((unit[0] - base[0], unit[1] - base[1]) for unit in (at(**counts) for counts in _UNIT_USAGES))
            linear = _Linear(prices, base, rates)
        except (ValueError, ArithmeticError):
            linear = None  # priced the long way, which reports the error
    table.linear[key] = (prices, linear)
    return linear


def _genai_usage(table: _Table, usage: Usage) -> Any:
    # The same convention on both sides (input includes cache tokens, output includes
    # reasoning): the parts are named so that their own prices apply, nothing is added twice.
    values = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens,
        "output_reasoning_tokens": usage.reasoning_tokens,
        "input_audio_tokens": usage.input_audio_tokens,
        "output_audio_tokens": usage.output_audio_tokens,
        "output_image_tokens": usage.output_image_tokens,
    }
    return table.usage_class(**{k: v for k, v in values.items() if v})


# -- transcription and speech: priced by what the provider bills them on ------------------------
# The usage keys a transcription or speech model is billed on (genai-prices' names). A price the
# model has on one of these that the call did not report makes the cost unknown: priced without
# it, whisper-1 (per audio hour) or tts-1 (per million characters) would read as free.
_MEDIA_UNITS = frozenset(
    {
        "input_tokens",
        "output_tokens",
        "input_audio_tokens",
        "output_audio_tokens",
        "audio_seconds",
        "input_audio_seconds",
        "output_audio_seconds",
        "input_characters",
    }
)


def price_media_units(
    ref: PriceRef, models: tuple[str, ...], at: float, units: dict[str, float], why_missing: str
) -> tuple[Cost | None, str | None]:
    """(cost, None) or (None, reason) for a transcription or speech call billed on ``units``
    (genai-prices usage keys: tokens, audio seconds, input characters).

    ``why_missing`` ends the reason given when the table prices the model on a unit the call has
    no count of ("OpenAI's Speech API reports no token usage")."""
    if ref.table is None and ref.provider_type in _LOCAL_TYPES:
        return zero_cost(), None
    table = _table()
    if isinstance(table, Unpriced):
        return None, table.reason
    where = _where(table, ref)
    if isinstance(where, Unpriced):
        return None, where.reason
    found = _find(table, where, models)
    if isinstance(found, Unpriced):
        return None, found.reason
    provider, model = found
    from datetime import datetime, timezone

    from genai_prices.data_units import unit_data

    when = datetime.fromtimestamp(at, tz=timezone.utc)
    prices = model.get_prices(when)
    usage_key_of = {unit["price_key"]: key for key, unit in unit_data.items()}
    billed_on = [
        usage_key_of[name]
        for name, price in vars(prices).items()
        if price is not None and usage_key_of.get(name) in _MEDIA_UNITS
    ]
    if not billed_on:
        return (
            None,
            f"cost unknown: genai-prices {table.version} has no per-token, per-second or per-character "
            f"price for {model.id!r}",
        )
    missing = [key for key in billed_on if key not in units]
    if missing:
        return None, (
            f"cost unknown: genai-prices {table.version} prices {model.id!r} by {', '.join(missing)}, and {why_missing}"
        )
    counts = {key: value for key, value in units.items() if value}
    try:
        calculated = model.calc_price(table.usage_class(**counts), provider, genai_request_timestamp=when)
    except (ValueError, ArithmeticError) as error:
        return None, f"genai-prices could not price {model.id!r}: {error}"
    return Cost(calculated.total_price, calculated.input_price, calculated.output_price), None
