"""Run one function over many items with bounded concurrency, in threads or asyncio tasks.

Shared by the client's embedding fan-out (one batch of texts per call) and by ``client.batch``
(one prompt per call). Workers pull from one iterator, so a million items make ``concurrency``
threads or tasks, not a million; after the first failure nothing new starts and it is raised.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

__all__ = ["afan_out", "fan_out"]

T = TypeVar("T")
T_in = TypeVar("T_in")


def fan_out(run: Callable[[T_in], T], items: Sequence[T_in], concurrency: int) -> list[T]:
    """``run`` over ``items`` in at most ``concurrency`` threads, results in input order.

    After a failure (or an interrupt of the calling thread) nothing new starts; what is in flight
    finishes (its work is done, not re-sent) and the first error is raised.
    """
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    stop = threading.Event()
    pending = iter(range(len(items)))
    lock = threading.Lock()

    def worker() -> None:
        while not stop.is_set():
            with lock:
                index = next(pending, None)
            if index is None:
                return
            try:
                results[index] = run(items[index])
            except BaseException as exc:  # handed to the calling thread, which raises it
                errors.append(exc)
                stop.set()

    threads = [
        threading.Thread(target=worker, name="fmclient-fan-out", daemon=True)
        for _ in range(min(concurrency, len(items)))
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
    if errors:
        raise errors[0]
    return results


async def afan_out(run: Callable[[T_in], Awaitable[T]], items: Sequence[T_in], concurrency: int) -> list[T]:
    """The async twin of :func:`fan_out`: at most ``concurrency`` tasks; the first failure
    cancels the rest."""
    import asyncio

    results: list[Any] = [None] * len(items)
    pending = iter(range(len(items)))

    async def worker() -> None:
        for index in pending:  # shared: each index goes to one worker
            results[index] = await run(items[index])

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return results
