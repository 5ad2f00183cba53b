"""fmclient on Ray Data: a callable class for ``Dataset.map_batches`` (``pip install "fmclient[ray]"``).

When one machine is not enough, Ray Data spreads the rows over a cluster; fmclient builds no
cluster machinery of its own. Each Ray actor holds one :class:`~fmclient.Client`, built once in
the actor, and sends the rows of each batch concurrently with ``acomplete`` on the actor's own
event loop::

    import ray
    from fmclient.ray import FMClientPredictor, predictor_kwargs

    ds = ray.data.read_parquet("prompts.parquet")
    actors = 4
    out = ds.map_batches(
        FMClientPredictor,
        fn_constructor_kwargs=predictor_kwargs(
            model="openai/gpt-4o-mini",
            actors=actors,
            rate_limits={"openai": {"rpm": 5000, "tpm": 2_000_000}},  # for the whole cluster
            concurrency_per_actor=32,
        ),
        concurrency=actors,
        batch_size=256,
    )

Each output row keeps the input columns and adds:

* ``text`` (str or None when the row failed)
* ``input_tokens``, ``output_tokens``, ``cached_input_tokens``, ``reasoning_tokens`` (int; 0 on failure)
* ``cost`` (float US dollars, or None when the price is unknown; the exact ``Decimal`` is
  converted with ``float`` because Arrow columns hold no Decimal of arbitrary scale: sum the
  column for a run's spend, to about 15 significant digits)
* ``error_type`` and ``error`` (the exception's class name and message; None when the row
  succeeded). One row's failure never raises: it is recorded and the batch goes on.

The input columns pass through as Ray gave them (list and array columns, ``datetime64``,
decimals keep their type). An input column with the name of an output column is refused before
any request, with the clash named: pass ``output_prefix="fm_"`` (any prefix) to name the output
columns ``fm_text``, ``fm_cost``... instead.

With shared state (``shared="redis://..."`` in ``client_config``, or ``[shared]`` in the config
file; see :mod:`fmclient.shared`) every actor uses the same limiter, budget and circuit breakers in
Redis and nothing is split: idle actors leave their room to busy ones. Without it, rate limits
hold cluster-wide by **splitting**: the configured ``rpm``/``tpm`` of each entry is
divided by the number of actors (rounded down, at least 1), and each actor's Client enforces its
share locally (``fmclient.limits``). That holds for every source of limits: the ``rate_limits``
argument, ``client_config["rate_limits"]``, and the ``[rate_limits]`` of the config file the
actor's Client reads. A ``max_cost`` budget (argument or ``[budget]``) is split the same way, so
the actors together never spend more than it. ``actors`` must therefore be the ``concurrency``
passed to ``map_batches`` (with an autoscaling range ``(min, max)``, pass ``max``). The sum over
actors never exceeds the limit; the price is that an idle actor's share is not lent to a busy
one. A shared Ray actor would pool the budget, at one cross-process round trip per request: not
worth it at the throughput one actor reaches.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fmclient.errors import ConfigurationError

if TYPE_CHECKING:
    from fmclient.limits import RateLimit

__all__ = ["OUTPUT_COLUMNS", "FMClientPredictor", "predictor_kwargs", "split_rate_limits"]

#: The columns each output row gets, besides the input columns.
OUTPUT_COLUMNS = (
    "text",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cost",
    "error_type",
    "error",
)
_LIMIT_KEYS = ("rpm", "tpm")


def split_rate_limits(
    rate_limits: Mapping[str, Mapping[str, int | None] | RateLimit], actors: int
) -> dict[str, dict[str, int]]:
    """Each actor's share of cluster-wide limits: every rpm/tpm divided by ``actors``, rounded down.

    Rounding down keeps ``actors * share <= limit``; a share is at least 1 so an actor can still
    work, which can only exceed a limit smaller than the number of actors (refused here).
    """
    _check_actors(actors)
    shares: dict[str, dict[str, int]] = {}
    for key, limit in rate_limits.items():
        share: dict[str, int] = {}
        for name in _LIMIT_KEYS:
            value = limit.get(name) if isinstance(limit, Mapping) else getattr(limit, name, None)
            if value is None:
                continue
            if value < actors:
                raise ConfigurationError(
                    f"rate_limits.{key}.{name} = {value} cannot be split over {actors} actors (each needs at least 1)"
                )
            share[name] = value // actors
        shares[key] = share
    return shares


def _check_actors(actors: Any) -> None:
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ConfigurationError(f"actors must be a positive integer (the map_batches concurrency), got {actors!r}")


def predictor_kwargs(
    *,
    model: str,
    actors: int = 1,
    prompt_column: str = "prompt",
    system: str | None = None,
    client_config: Mapping[str, Any] | None = None,
    rate_limits: Mapping[str, Mapping[str, int | None]] | None = None,
    concurrency_per_actor: int = 16,
    output_prefix: str = "",
    **call_args: Any,
) -> dict[str, Any]:
    """``fn_constructor_kwargs`` for :class:`FMClientPredictor`, with the rate limits split over ``actors``.

    Every limit and budget is for the whole cluster: ``rate_limits`` is split here, and the
    actors split the rest (``client_config``'s, the config file's) when they build their Client.
    """
    # With [shared] state (Redis) the actors share one limiter and budget: nothing is split, so
    # idle actors leave their room to busy ones.
    split = rate_limits is not None and not _shares_state(dict(client_config or {}))
    return {
        "model": model,
        "actors": actors,
        "prompt_column": prompt_column,
        "system": system,
        "client_config": dict(client_config or {}),
        "rate_limits": split_rate_limits(rate_limits, actors) if split and rate_limits is not None else rate_limits,
        "concurrency_per_actor": concurrency_per_actor,
        "output_prefix": output_prefix,
        **call_args,
    }


class FMClientPredictor:
    """A callable class for ``Dataset.map_batches``: one Client per actor, rows sent concurrently.

    ``client_config``: keyword arguments of :class:`~fmclient.Client` (``providers``, ``aliases``,
    ``max_retries``, ``timeout``...). ``rate_limits``: THIS actor's share (use
    :func:`predictor_kwargs` or :func:`split_rate_limits` to split cluster-wide limits).
    ``actors``: how many actors share the cluster-wide limits and budget that the Client finds
    elsewhere (``client_config``, the config file): each actor takes its share of them.
    ``output_prefix``: put before every output column's name (an input column of the same name
    is refused otherwise). ``call_args``: passed to every ``acomplete`` (``max_tokens``,
    ``temperature``...).
    """

    def __init__(
        self,
        *,
        model: str,
        actors: int = 1,
        prompt_column: str = "prompt",
        system: str | None = None,
        client_config: Mapping[str, Any] | None = None,
        rate_limits: Mapping[str, Mapping[str, int]] | None = None,
        concurrency_per_actor: int = 16,
        output_prefix: str = "",
        **call_args: Any,
    ) -> None:
        from fmclient.client import Client

        if isinstance(concurrency_per_actor, bool) or not isinstance(concurrency_per_actor, int):
            raise ConfigurationError(f"concurrency_per_actor must be a positive integer, got {concurrency_per_actor!r}")
        if concurrency_per_actor < 1:
            raise ConfigurationError(f"concurrency_per_actor must be a positive integer, got {concurrency_per_actor!r}")
        if not isinstance(output_prefix, str):
            raise ConfigurationError(f"output_prefix must be a string, got {output_prefix!r}")
        _check_actors(actors)
        config = dict(client_config or {})
        if actors != 1:
            config.update(_actor_share(config, actors))
        if rate_limits is not None:
            # Nothing the caller asked for is dropped: without the limiter, refuse rather than run unlimited.
            if importlib.util.find_spec("fmclient.limits") is None:
                raise ConfigurationError("rate_limits need fmclient.limits, which this fmclient version lacks")
            config["rate_limits"] = {
                **config.get("rate_limits", {}),
                **{key: dict(value) for key, value in rate_limits.items()},
            }
        self.output_columns = {name: output_prefix + name for name in OUTPUT_COLUMNS}
        self.model = model
        self.prompt_column = prompt_column
        self.system = system
        self.concurrency = concurrency_per_actor
        self.call_args = call_args
        self.client = Client(**config)
        # One loop for the actor's life: the SDK's connection pool belongs to the loop it ran on,
        # so a loop per batch would rebuild the pool (and its connections) every batch.
        self._loop = asyncio.new_event_loop()

    def __call__(self, batch: Any) -> Any:
        """One batch (numpy dict or pandas DataFrame) in, the same columns plus the output columns out."""
        names = _column_names(batch)
        if self.prompt_column not in names:
            raise ConfigurationError(
                f"the batch has no column {self.prompt_column!r} (columns: {', '.join(sorted(names))})"
            )
        clashes = [column for column in self.output_columns.values() if column in names]
        if clashes:
            # Overwriting an input column would lose the caller's data without a word.
            raise ConfigurationError(
                f"the batch already has column(s) {', '.join(map(repr, clashes))}, which fmclient.ray writes: "
                f"rename them, or pass output_prefix (for example output_prefix='fm_') to name the output columns apart"
            )
        prompts = [_plain(value) for value in batch[self.prompt_column]]
        rows = self._loop.run_until_complete(self._run(prompts))
        # The input columns go back as Ray gave them: converting them to Python values would turn
        # datetime64 into integers and fail on list or array cells.
        if isinstance(batch, Mapping):
            out = dict(batch)
            for name, column in self.output_columns.items():
                out[column] = [row[name] for row in rows]
            return out
        import pandas

        frame = batch.copy()
        for name, column in self.output_columns.items():
            # object: a failed row's text stays None (pandas would infer a string column with NaN).
            frame[column] = pandas.Series([row[name] for row in rows], index=frame.index, dtype=object)
        return frame

    async def _run(self, prompts: list[Any]) -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(prompt: Any) -> dict[str, Any]:
            async with gate:
                return await self._one(prompt)

        return list(await asyncio.gather(*(one(prompt) for prompt in prompts)))

    async def _one(self, prompt: Any) -> dict[str, Any]:
        try:
            if not isinstance(prompt, str):
                raise TypeError(f"column {self.prompt_column!r} must hold strings, got {type(prompt).__name__}")
            completion = await self.client.acomplete(prompt, model=self.model, system=self.system, **self.call_args)
        except Exception as exc:  # one row's failure is recorded; the batch goes on
            return {
                "text": None,
                "input_tokens": 0,
                "output_tokens": 0,
                "cached_input_tokens": 0,
                "reasoning_tokens": 0,
                "cost": None,
                "error_type": type(exc).__name__,
                "error": str(exc),
            }
        usage = completion.usage
        cost = completion.cost
        return {
            "text": completion.text,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cost": None if cost is None else float(cost.total),
            "error_type": None,
            "error": None,
        }

    def __del__(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is None or loop.is_closed():
            return
        try:
            loop.run_until_complete(self.client.aclose())
            loop.close()
        except Exception:  # an actor being torn down: release what we can
            pass


def _actor_share(config: Mapping[str, Any], actors: int) -> dict[str, Any]:
    """This actor's share of the cluster-wide limits and budget the Client would find itself.

    The limits and budget come from the config file and ``client_config`` as much as from the
    arguments; each of ``actors`` Clients applying all of them would send ``actors`` times the limit.
    """
    from fmclient.budget import parse_max_cost
    from fmclient.config import load_settings

    if _shares_state(config):
        return {}  # one shared limiter and budget for every actor (fmclient.shared): nothing to split
    overrides: dict[str, Any] = {}
    if config.get("rate_limits") is not None:
        overrides["rate_limits"] = config["rate_limits"]
    if config.get("max_cost") is not None:
        overrides["budget"] = {"max_cost": config["max_cost"]}
    settings = load_settings(env=config.get("env"), config_path=config.get("config_path"), overrides=overrides)
    share: dict[str, Any] = {}
    if settings.rate_limits:
        share["rate_limits"] = split_rate_limits(settings.rate_limits, actors)
    if settings.budget.get("max_cost") is not None:
        share["max_cost"] = parse_max_cost(settings.budget["max_cost"]) / actors
    return share


def _shares_state(config: Mapping[str, Any]) -> bool:
    """Does the actors' Client share its limits and budget over Redis (``shared`` / ``[shared]``)?"""
    from fmclient.config import load_settings

    overrides = {"shared": config["shared"]} if config.get("shared") is not None else None
    settings = load_settings(env=config.get("env"), config_path=config.get("config_path"), overrides=overrides)
    return bool(settings.shared.get("url"))


def _column_names(batch: Any) -> list[str]:
    """The column names of a Ray batch: a dict of numpy arrays / lists, or a pandas DataFrame."""
    if isinstance(batch, Mapping):
        return [str(name) for name in batch]
    if callable(getattr(batch, "to_dict", None)):  # pandas.DataFrame
        return [str(name) for name in batch.columns]
    raise TypeError(f"unsupported batch type {type(batch).__name__}: use batch_format='numpy' or 'pandas'")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (``str`` rather than ``numpy.str_``); anything else as is."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0 and not isinstance(value, (str, bytes)):
        return item()
    return value
