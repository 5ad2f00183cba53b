"""How an app unit-tests its fmclient calls: no network, no keys, app code unchanged.

Run with:  pytest examples/test_app_with_mock.py
The ``fmclient_mock`` fixture comes with fmclient (a pytest plugin); it answers every model.
"""

import fmclient
from fmclient.testing import MockProvider


# -- the app code under test ---------------------------------------------------------------
def classify_ticket(text: str) -> str:
    reply = fmclient.complete(
        [{"role": "user", "content": f"Classify this support ticket as bug, billing or other:\n{text}"}],
        model="claude-sonnet",
        system="Answer with one word.",
        max_tokens=5,
    )
    label = reply.text.strip().lower()
    return label if label in {"bug", "billing", "other"} else "other"


# -- its tests ------------------------------------------------------------------------------
def test_classifies_with_the_model_answer(fmclient_mock: MockProvider) -> None:
    fmclient_mock.add_reply("Billing")
    assert classify_ticket("I was charged twice") == "billing"
    request = fmclient_mock.last_request
    assert request.system == "Answer with one word."
    assert "charged twice" in request.messages[0].text


def test_unexpected_answers_fall_back_to_other(fmclient_mock: MockProvider) -> None:
    fmclient_mock.add_reply("I am not sure, maybe a feature request?")
    assert classify_ticket("Add dark mode") == "other"


def test_rate_limits_are_retried_for_the_app(fmclient_mock: MockProvider) -> None:
    fmclient_mock.add_error(429, retry_after=2).add_reply("bug")
    assert classify_ticket("It crashes") == "bug"
    assert fmclient_mock.sleeps == [2]  # waited as the provider asked, without sleeping in the test
