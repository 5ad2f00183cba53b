"""Secret redaction while other threads register keys: scrubbing never fails and never misses a
key registered before it started."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from fmclient.secret import redact, register_secret, scrub_exception


@pytest.fixture
def busy_switching() -> Iterator[None]:
    # Switch threads as often as the interpreter allows, so a reader is caught mid-iteration.
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(saved)


def test_registering_keys_while_other_threads_scrub(busy_switching: None) -> None:
    stable = "sk-thread-stable-key-0123456789"
    register_secret(stable)
    failures: list[BaseException] = []
    leaks: list[str] = []
    writers_done = threading.Event()

    def write(worker: int) -> None:
        try:
            for n in range(400):
                register_secret(f"sk-thread-{worker}-{n:05d}-abcdefghij")
        except BaseException as exc:
            failures.append(exc)

    def scrub() -> None:
        try:
            while not writers_done.is_set():
                text = redact(f"key {stable} echoed")
                if stable in text:
                    leaks.append(text)
                error = RuntimeError(f"provider said: bad key {stable}")
                scrub_exception(error)
                if stable in str(error):
                    leaks.append(str(error))
        except BaseException as exc:
            failures.append(exc)

    readers = [threading.Thread(target=scrub) for _ in range(3)]
    writers = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    writers_done.set()
    for thread in readers:
        thread.join()

    assert failures == []  # with a set iterated while growing: "Set changed size during iteration"
    assert leaks == []
    # Every key registered by any thread is known afterwards.
    for worker in range(3):
        for n in (0, 199, 399):
            key = f"sk-thread-{worker}-{n:05d}-abcdefghij"
            assert key not in redact(f"x {key} y")


def test_a_key_containing_another_key_is_redacted_whole() -> None:
    register_secret("abcdef-inner")
    register_secret("outer-abcdef-inner-tail")
    assert redact("k=outer-abcdef-inner-tail;") == "k=**********;"
