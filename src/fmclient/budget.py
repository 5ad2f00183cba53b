"""A spending limit per client: ``Client(max_cost=...)`` or the config file's ``[budget]`` table.

    [budget]
    max_cost = 5.00     # USD, for the life of the client

What counts: the cost of every call the client completed (``Completion.cost``, a stream's final
Completion, ``Embeddings.cost``), summed exactly as :class:`~decimal.Decimal`. The check: before
a call sends anything (and before each fallback target), a client whose spend has reached
``max_cost`` raises :class:`~fmclient.errors.BudgetExceededError`.

* Costs are known only when answers arrive, so calls already in flight when the budget is reached
  finish and are counted: the spend can end above ``max_cost`` by what those calls cost. No new
  request leaves once the spend has reached it.
* A call whose cost is unknown (the model is not in the price table) counts nothing: a warning is
  logged once per provider and model on the ``fmclient`` logger, naming the reason.
* A stream counts when it finishes; one abandoned before its end has no usage to count.
* Retries of a call that already passed the check are not re-checked: they follow a failure,
  which is not billed.
* Spend is kept in memory, per client: a new client starts from zero; with ``[shared]`` (see
  :mod:`fmclient.shared`) it is one Redis counter, named by ``name``, that every process adds to
  and reads (``client.spent`` is the total of all of them).
* ``period = "day"`` or ``"month"`` starts the spend from zero each UTC day or month.

    [budget]
    max_cost = 50
    name = "team-a"     # the shared counter's name (default "default")
    period = "day"      # optional: "day" or "month" (UTC)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fmclient.errors import BudgetExceededError, ConfigurationError

if TYPE_CHECKING:
    from decimal import Decimal

    from fmclient.types import Completion, Embeddings, Images, Speech, Transcription

__all__ = ["Budget", "budget_from_settings", "parse_max_cost"]

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


class Budget:
    """Spend so far against ``max_cost``; safe to share between threads and asyncio tasks."""

    __slots__ = ("_lock", "_period_id", "_spent", "_unknown_warned", "max_cost", "period")

    def __init__(self, max_cost: Decimal, period: str | None = None) -> None:
        from decimal import Decimal

        self.max_cost = max_cost
        self.period = period
        self._period_id = budget_period_id(period)
        self._spent = Decimal(0)
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

    def add(self, amount: Decimal) -> None:
        """Count ``amount`` USD as spent."""
        self.spent  # noqa: B018 (a new period starts from zero before this is added)
        with self._lock:
            self._spent += amount

    def check(self, provider: str, model: str) -> None:
        """Raise if the budget is spent: called before any request of a call leaves."""
        spent = self.spent  # one read: a concurrent charge replaces the object, never mutates it
        if spent >= self.max_cost:
            raise BudgetExceededError(
                f"budget spent: {spent} of max_cost {self.max_cost} USD; no request was sent",
                provider=provider,
                model=model,
                spent=spent,
                max_cost=self.max_cost,
            )

    def charge(
        self, result: Completion | Embeddings | Images | Transcription | Speech, provider: str, model: str
    ) -> None:
        """Add a finished call's cost; an unknown cost counts nothing and is logged once."""
        cost = result.cost
        if cost is None:
            key = (provider, model)
            if key not in self._unknown_warned:
                self._unknown_warned.add(key)
                import logging

                logging.getLogger("fmclient").warning(
                    "budget: the cost of %s/%s is unknown and is not counted (%s)", provider, model, result.cost_reason
                )
            return
        self.add(cost.total)
