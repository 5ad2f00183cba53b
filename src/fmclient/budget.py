"""A spending limit per client: ``Client(max_cost=...)`` or the config file's ``[budget]`` table.

    [budget]
    max_cost = 5.00     # USD, for the life of the client

What counts: the cost of every call the client completed (``Completion.cost``, a stream's final
Completion, ``Embeddings.cost``), summed exactly as :class:`~decimal.Decimal`.

Reserve before sending, settle after: before a target's request leaves, the call reserves an
estimate of what it may cost, atomically with the check. A call is refused with
:class:`~fmclient.errors.BudgetExceededError` (nothing sent) when ``spent + reserved + estimate``
would pass ``max_cost`` (or the spend alone has reached it). When the answer arrives the
reservation is replaced by the real cost; when the target fails, the call is cancelled or a stream
is closed early, it is released. So calls in flight together can never promise more than the
budget holds, whether they are threads, tasks or (with ``[shared]``) other processes.

* The estimate (:func:`estimate_cost`): the request's input tokens (fmclient's offline estimate,
  :func:`fmclient.tokens.estimate`) plus its ``max_tokens`` (or :data:`UNKNOWN_MAX_TOKENS` when the
  call sets none), priced with genai-prices at the model's base rates. Set ``max_tokens`` for a
  reservation that fits the call. A model the price table does not know reserves nothing (its cost
  is unknown and counts nothing). Other calls (embeddings: their input; images, audio) reserve
  what their input is known to cost, or nothing.
* The spend can end above ``max_cost`` only by what calls in flight cost beyond their estimate (a
  prompt the offline estimate undercounted); no new request leaves once the spend has reached it.
* A call whose cost is unknown (the model is not in the price table) counts nothing: a warning is
  logged once per provider and model on the ``fmclient`` logger, naming the reason.
* A stream counts when it finishes; one abandoned before its end has no usage to count.
* Retries of a target hold its reservation: they follow a failure, which is not billed.
* Spend is kept in memory, per client: a new client starts from zero; with ``[shared]`` (see
  :mod:`fmclient.shared`) it is one Redis counter, named by ``name``, that every process adds to
  and reads (``client.spent`` is the total of all of them); a reservation whose process died
  expires on its own.
* ``period = "day"`` or ``"month"`` starts the spend from zero each UTC day or month.

    [budget]
    max_cost = 50
    name = "team-a"     # the shared counter's name (default "default")
    period = "day"      # optional: "day" or "month" (UTC)
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from fmclient.errors import BudgetExceededError, ConfigurationError

if TYPE_CHECKING:
    from decimal import Decimal

    from fmclient.types import Completion, Embeddings, Images, Speech, Transcription

__all__ = ["UNKNOWN_MAX_TOKENS", "Budget", "Reservation", "budget_from_settings", "estimate_cost", "parse_max_cost"]

T = TypeVar("T")

#: the output tokens a chat call that sets no ``max_tokens`` is assumed to produce when reserving
UNKNOWN_MAX_TOKENS = 1024

BUDGET_KEYS = frozenset({"max_cost", "name", "period"})
PERIODS = ("day", "month")


def budget_period_id(period: str | None) -> str | None:
    """The current period's id (UTC): ``"2026-12-07"`` for a day, ``"2026-12"`` for a month."""
    if period is None:
        return None
    import time

    return time.strftime("%Y-%m-%d" if period == "day" else "%Y-%m", time.gmtime())


def parse_max_cost(value: Any, where: str = "max_cost") -> Decimal:
    """A non-negative amount of USD as Decimal; a float goes through its shortest text (0.1 -> 0.1)."""
    from decimal import Decimal, InvalidOperation

    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ConfigurationError(f"{where} must be a number of USD, got {value!r}")
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ConfigurationError(f"{where} must be a number of USD, got {value!r}") from None
    if amount.is_nan() or amount < 0:
        raise ConfigurationError(f"{where} must be zero or more, got {value!r}")
    return amount


def check_budget_table(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{where}: [budget] must be a table")
    unknown = sorted(set(table) - BUDGET_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown budget setting {', '.join(map(repr, unknown))}; known: max_cost, name, period"
        )
    if table.get("period") is not None and table["period"] not in PERIODS:
        raise ConfigurationError(f'{where}: budget.period must be "day" or "month", got {table["period"]!r}')
    if "name" in table and (not isinstance(table["name"], str) or not table["name"]):
        raise ConfigurationError(f"{where}: budget.name must be a non-empty string")
    if "max_cost" in table and table["max_cost"] is not None:
        parse_max_cost(table["max_cost"], f"{where}: budget.max_cost")
    return dict(table)


def budget_from_settings(table: Mapping[str, Any], shared: Any = None) -> Budget | None:
    """The client's Budget, or None when no ``max_cost`` is set (spend is then not tracked)."""
    if table.get("max_cost") is None:
        return None
    from fmclient.pricing import prices_available

    missing = prices_available()
    if missing is not None:
        # Without prices every cost is unknown and the budget would never stop anything.
        raise ConfigurationError(f"max_cost needs the price table, which cannot be used: {missing.reason}")
    max_cost, period = parse_max_cost(table["max_cost"]), table.get("period")
    if shared is not None:  # fmclient.shared.SharedState: one counter for every process
        return shared.budget(max_cost, str(table.get("name", "default")), period)  # type: ignore[no-any-return]
    return Budget(max_cost, period=period)


def estimate_cost(rates: tuple[Decimal | None, Decimal | None] | None, request: Any) -> Decimal:
    """What a request may cost, to reserve before it is sent (see the module docstring).

    ``rates``: the model's input and output USD per million tokens (None: not priced).
    """
    from decimal import Decimal

    if rates is None:
        return Decimal(0)
    input_rate, output_rate = rates
    if hasattr(request, "messages"):  # a chat Request
        from fmclient.tokens import estimate

        input_tokens = estimate(request, "budget reservation").input_tokens
        output_tokens = request.max_tokens or UNKNOWN_MAX_TOKENS
    elif hasattr(request, "texts"):  # embeddings: the input is all there is
        from fmclient.tokens import CHARS_PER_TOKEN

        input_tokens = -(-sum(len(text) for text in request.texts) // CHARS_PER_TOKEN)
        output_tokens = 0
    else:  # images, audio: priced by units the request does not tell
        return Decimal(0)
    total = input_tokens * (input_rate or 0) + output_tokens * (output_rate or 0)
    return Decimal(total) / 1_000_000


class Reservation:
    """What one target of a call reserved of the budget, until it is settled or released."""

    __slots__ = ("amount", "done", "id", "settling", "shared")

    def __init__(self, amount: Decimal, reservation_id: str = "", shared: bool = False) -> None:
        self.amount = amount
        self.id = reservation_id
        self.shared = shared  # held in Redis (else in this process)
        self.done = False
        self.settling: Any = None  # an async call's settle, under way (an asyncio task)

    async def settled(self) -> None:
        """Wait for an async call's settle to be recorded (so ``spent`` reads it)."""
        if self.settling is not None:
            await self.settling


class Budget:
    """Spend so far against ``max_cost``; safe to share between threads and asyncio tasks."""

    __slots__ = ("_lock", "_period_id", "_reserved", "_spent", "_unknown_warned", "max_cost", "period")

    def __init__(self, max_cost: Decimal, period: str | None = None) -> None:
        from decimal import Decimal

        self.max_cost = max_cost
        self.period = period
        self._period_id = budget_period_id(period)
        self._spent = Decimal(0)
        self._reserved = Decimal(0)
        self._lock = threading.Lock()
        self._unknown_warned: set[tuple[str, str]] = set()

    @property
    def spent(self) -> Decimal:
        """USD spent so far (in the current period, when the budget resets)."""
        if self.period is not None and budget_period_id(self.period) != self._period_id:
            from decimal import Decimal

            with self._lock:
                self._period_id, self._spent = budget_period_id(self.period), Decimal(0)
        return self._spent

    @property
    def reserved(self) -> Decimal:
        """USD reserved by calls in flight (not spent yet)."""
        return self._reserved

    def add(self, amount: Decimal) -> None:
        """Count ``amount`` USD as spent."""
        self.spent  # noqa: B018 (a new period starts from zero before this is added)
        with self._lock:
            self._spent += amount

    def _refusal(self, spent: Decimal, reserved: Decimal, estimate: Decimal, provider: str, model: str) -> None:
        """Raise when ``estimate`` does not fit beside what is spent and reserved."""
        if spent + reserved >= self.max_cost or spent + reserved + estimate > self.max_cost:
            held = f" and {reserved} reserved by calls in flight" if reserved else ""
            if spent + reserved >= self.max_cost:
                why = f"budget{self._label()} spent: {spent} of max_cost {self.max_cost} USD{held}"
            else:
                why = (
                    f"budget{self._label()}: {spent} of max_cost {self.max_cost} USD spent{held}, and this call "
                    f"may cost up to {estimate} (its input and max_tokens; set max_tokens to reserve less)"
                )
            raise BudgetExceededError(
                f"{why}; no request was sent",
                provider=provider,
                model=model,
                spent=spent,
                max_cost=self.max_cost,
            )

    def _label(self) -> str:
        return ""

    def check(self, provider: str, model: str) -> None:
        """Raise if the budget is spent (or wholly reserved): called before any request of a call leaves."""
        from decimal import Decimal

        self._refusal(self.spent, self._reserved, Decimal(0), provider, model)

    def reserve(
        self, estimate: Decimal, provider: str, model: str, lease: float | None = None, defer: bool = False
    ) -> Reservation:
        """Reserve ``estimate`` USD for a request about to be sent; refuse when it does not fit.

        ``lease``: seconds the call may still take (used where a reservation must expire by
        itself, in Redis); a reservation here ends with its call. ``defer``: the request goes
        through the rate limiter, which may take the reservation with its admission (the shared
        budget does, to save a round trip to Redis); here it is taken now.
        """
        reservation = Reservation(estimate)
        self._hold(reservation, provider, model)
        return reservation

    async def atake(self, reservation: Reservation) -> None:
        """Take a deferred reservation now, in an async call (refuse if it does not fit); here
        reservations are taken at once."""

    def taken(self, attempt: Callable[[float | None], T], reservation: Reservation) -> Callable[[float | None], T]:
        """``attempt``, after a deferred reservation is taken (see :meth:`reserve`): the call's
        path to a target without rate limits. Here reservations are taken at once."""
        return attempt

    def ataken(
        self, attempt: Callable[[float | None], Awaitable[T]], reservation: Reservation
    ) -> Callable[[float | None], Awaitable[T]]:
        """The async twin of :meth:`taken`."""
        return attempt

    def _hold(self, reservation: Reservation, provider: str, model: str) -> None:
        """Reserve ``reservation.amount`` in this process, or refuse."""
        spent = self.spent
        with self._lock:
            self._refusal(spent, self._reserved, reservation.amount, provider, model)
            self._reserved += reservation.amount

    def settle(self, reservation: Reservation | None, amount: Decimal | None) -> None:
        """Replace a reservation by the call's real cost (``None``: unknown, counts nothing)."""
        if reservation is None:
            if amount is not None:
                self.add(amount)
            return
        self.spent  # noqa: B018 (a new period starts from zero before this is added)
        with self._lock:
            if not reservation.done:
                reservation.done = True
                self._reserved -= reservation.amount
            if amount is not None:
                self._spent += amount

    def release(self, reservation: Reservation | None) -> None:
        """Give a reservation back: the call failed, was cancelled or closed early."""
        if reservation is None:
            return
        with self._lock:
            if not reservation.done:
                reservation.done = True
                self._reserved -= reservation.amount

    def charge(
        self,
        result: Completion | Embeddings | Images | Transcription | Speech,
        provider: str,
        model: str,
        reservation: Reservation | None = None,
    ) -> None:
        """Settle a finished call to its cost; an unknown cost counts nothing and is logged once."""
        cost = result.cost
        if cost is None:
            key = (provider, model)
            if key not in self._unknown_warned:
                self._unknown_warned.add(key)
                import logging

                logging.getLogger("fmclient").warning(
                    "budget: the cost of %s/%s is unknown and is not counted (%s)", provider, model, result.cost_reason
                )
            self.settle(reservation, None)
            return
        self.settle(reservation, cost.total)
