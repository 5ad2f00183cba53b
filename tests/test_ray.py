"""fmclient.ray on a local Ray cluster against the loopback OpenAI fake (the real openai SDK in the actors).

The fake runs in this process; the actors run in Ray worker processes and reach it over 127.0.0.1.
One cluster per session (``ray.init`` costs seconds); the tests are few and small.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmclient.errors import ConfigurationError
from fmclient.ray import OUTPUT_COLUMNS, FMClientPredictor, predictor_kwargs, split_rate_limits
from tests.fakes.openai import Answer, completion_body, error_reply
from tests.fakes.server import FakeServer, RecordedRequest, Reply

SRC = str(Path(__file__).resolve().parent.parent / "src")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def echo_or_fail(request: RecordedRequest) -> Reply:
    """Answers "echo: <prompt>"; a prompt containing FAIL gets a 400 (not retryable)."""
    body = request.json()
    prompt = body["messages"][-1]["content"]
    if "FAIL" in prompt:
        return error_reply(400, f"bad prompt {prompt}")
    return Reply(body=completion_body(Answer(f"echo: {prompt}", prompt_tokens=7, completion_tokens=3, cached_tokens=2)))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    import ray

    # Workers import fmclient from this worktree, whatever the installed copy points at.
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    except Exception as exc:  # a failure, not a skip: the extra is installed and must work
        pytest.fail(f"a local Ray cluster could not start: {type(exc).__name__}: {exc}")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer(echo_or_fail) as server:
        yield server


def client_config(server: FakeServer, tmp_path: Path | None = None) -> dict[str, Any]:
    # A current model: Ray's workers are processes of their own, where the suite's fixed day for
    # retirements does not apply (a retiring model would warn there, a retired one be refused).
    # gpt-6-luna prefers the Responses API; the fake answers Chat Completions, so api="chat".
    config: dict[str, Any] = {
        "providers": {"openai": {"base_url": server.url + "/v1", "api_key": "sk-test", "api": "chat"}},
        "max_retries": 0,
    }
    if tmp_path is not None:  # the fake's host is no priced provider's: the config says whose prices apply
        path = tmp_path / "prices.toml"
        path.write_text('[prices]\nopenai = "openai"\n')
        config["config_path"] = str(path)
    return config


def test_map_batches_gives_every_row_its_text_usage_cost_and_error(
    ray_cluster: Any, server: FakeServer, tmp_path: Path
) -> None:
    prompts = [f"row {i}" for i in range(40)] + ["please FAIL"]
    ds = ray_cluster.data.from_items([{"prompt": p, "id": i} for i, p in enumerate(prompts)])
    out = ds.map_batches(
        FMClientPredictor,
        fn_constructor_kwargs=predictor_kwargs(
            model="openai/gpt-6-luna",
            actors=2,
            client_config=client_config(server, tmp_path),
            concurrency_per_actor=8,
            max_tokens=5,
        ),
        concurrency=2,
        batch_size=16,
    )
    rows = sorted(out.take_all(), key=lambda row: row["id"])
    assert [row["prompt"] for row in rows] == prompts
    assert set(OUTPUT_COLUMNS) <= set(rows[0])
    for row in rows[:-1]:
        assert row["text"] == f"echo: {row['prompt']}" and row["error"] is None and row["error_type"] is None
        assert (row["input_tokens"], row["output_tokens"], row["cached_input_tokens"]) == (7, 3, 2)
        assert row["reasoning_tokens"] == 0
        assert isinstance(row["cost"], float) and row["cost"] > 0
    failed = rows[-1]
    assert failed["text"] is None and failed["cost"] is None and failed["error_type"] == "BadRequestError"
    assert "bad prompt please FAIL" in failed["error"]
    # One request per row: nothing retried, nothing lost; every body carried the call arguments.
    bodies = [r.json() for r in server.requests]
    assert len(bodies) == len(prompts)
    assert all(b["max_completion_tokens"] == 5 and b["model"] == "gpt-6-luna" for b in bodies)


def test_list_array_and_datetime_columns_come_back_as_they_went_in(
    ray_cluster: Any, server: FakeServer, tmp_path: Path
) -> None:
    import numpy as np

    when = np.datetime64("2026-03-01T12:30:00.123456", "us")
    items = [
        {
            "prompt": f"row {i}",
            "id": i,
            "tags": [f"t{i}", "x"],
            "vector": np.arange(3, dtype=np.float32) + i,
            "when": when,
        }
        for i in range(6)
    ]
    ds = ray_cluster.data.from_items(items)
    out = ds.map_batches(
        FMClientPredictor,
        fn_constructor_kwargs=predictor_kwargs(model="openai/gpt-6-luna", client_config=client_config(server)),
        concurrency=1,
        batch_size=3,
    )
    rows = sorted(out.take_all(), key=lambda row: row["id"])
    assert [row["text"] for row in rows] == [f"echo: row {i}" for i in range(6)]
    assert all(row["error"] is None for row in rows)
    assert [list(row["tags"]) for row in rows] == [[f"t{i}", "x"] for i in range(6)]
    assert [list(row["vector"]) for row in rows] == [[i, i + 1, i + 2] for i in range(6)]
    assert {np.datetime64(row["when"], "us") for row in rows} == {when}  # a time, not an integer
    assert not any(isinstance(row["when"], (int, np.integer)) for row in rows)


def test_an_input_column_named_like_an_output_column_is_refused_or_prefixed(server: FakeServer) -> None:
    import numpy as np

    batch = {"prompt": np.array(["a", "b"]), "text": np.array(["my own text", "kept"]), "cost": np.array([1.0, 2.0])}
    predictor = FMClientPredictor(model="openai/gpt-6-luna", client_config=client_config(server))
    with pytest.raises(ConfigurationError, match=r"'text', 'cost'.*output_prefix"):
        predictor(batch)
    assert server.requests == []  # refused before any request
    prefixed = FMClientPredictor(model="openai/gpt-6-luna", client_config=client_config(server), output_prefix="fm_")
    out = prefixed(batch)
    assert list(out["text"]) == ["my own text", "kept"] and list(out["cost"]) == [1.0, 2.0]
    assert out["fm_text"] == ["echo: a", "echo: b"] and out["fm_error"] == [None, None]
    assert not set(OUTPUT_COLUMNS) & {name for name in out if not name.startswith("fm_")} - {"text", "cost"}


def test_rate_limits_and_budget_from_the_config_file_are_split_over_the_actors(
    server: FakeServer, tmp_path: Path
) -> None:
    from decimal import Decimal

    from fmclient.limits import RateLimit

    path = tmp_path / "fmclient.toml"
    path.write_text(
        '[rate_limits."openai"]\nrpm = 1000\ntpm = 90000\n\n[rate_limits."openai/gpt-6-luna"]\nrpm = 30\n\n'
        "[budget]\nmax_cost = 3.0\n"
    )
    config = {**client_config(server), "config_path": str(path), "rate_limits": {"anthropic": {"rpm": 60}}}
    kwargs = predictor_kwargs(
        model="openai/gpt-6-luna", actors=3, client_config=config, rate_limits={"openai/gpt-6-luna": {"tpm": 3000}}
    )
    predictor = FMClientPredictor(**kwargs)
    assert dict(predictor.client.settings.rate_limits) == {
        "openai": RateLimit(rpm=333, tpm=30000),  # the file's, split
        "anthropic": RateLimit(rpm=20),  # client_config's, split
        "openai/gpt-6-luna": RateLimit(tpm=1000),  # the argument's share wins over the file's entry
    }
    assert predictor.client.max_cost == Decimal(1)
    # One actor (the default) takes everything as it is.
    single = FMClientPredictor(
        model="openai/gpt-6-luna", client_config={**client_config(server), "config_path": str(path)}
    )
    assert single.client.settings.rate_limits["openai"] == RateLimit(rpm=1000, tpm=90000)
    assert single.client.max_cost == Decimal(3)


def test_the_predictor_runs_a_pandas_batch_in_process(server: FakeServer) -> None:
    import pandas as pd

    predictor = FMClientPredictor(
        model="openai/gpt-6-luna", client_config=client_config(server), concurrency_per_actor=3
    )
    when = pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"])
    out = predictor(
        pd.DataFrame({"prompt": ["a", "b", "FAIL c"], "n": [1, 2, 3], "when": when, "tags": [["x"], [], ["y"]]})
    )
    assert out["n"].tolist() == [1, 2, 3] and out["text"].tolist() == ["echo: a", "echo: b", None]
    assert out["error_type"].tolist() == [None, None, "BadRequestError"]
    assert out["when"].tolist() == when.tolist() and out["tags"].tolist() == [["x"], [], ["y"]]
    # A second batch reuses the actor's loop and client.
    assert predictor({"prompt": ["d"]})["text"] == ["echo: d"]
    assert len(server.requests) == 4
    with pytest.raises(ConfigurationError, match="no column 'prompt'"):
        predictor({"text": ["x"]})
    assert len(server.requests) == 4


def test_rate_limits_are_split_so_the_actors_sum_stays_under_the_limit() -> None:
    shares = split_rate_limits({"openai": {"rpm": 1000, "tpm": 100_001}, "openai/gpt-6-luna": {"rpm": 7}}, 3)
    assert shares == {"openai": {"rpm": 333, "tpm": 33_333}, "openai/gpt-6-luna": {"rpm": 2}}
    assert 3 * shares["openai"]["rpm"] <= 1000 and 3 * shares["openai/gpt-6-luna"]["rpm"] <= 7
    with pytest.raises(ConfigurationError, match="cannot be split over 4 actors"):
        split_rate_limits({"openai": {"rpm": 3}}, 4)
    with pytest.raises(ConfigurationError, match="actors must be a positive integer"):
        split_rate_limits({"openai": {"rpm": 3}}, 0)


@pytest.mark.skipif(
    importlib.util.find_spec("fmclient.limits") is None, reason="fmclient.limits (the rate limiter) not in this tree"
)
def test_split_limits_hold_across_actors_in_any_window(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two actors (as Ray builds them, here in-process) on a fake clock: at most rpm requests per 60 s in total."""
    import asyncio

    from fmclient import limits, retry

    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    monkeypatch.setattr(limits, "monotonic", lambda: now[0])
    monkeypatch.setattr(limits, "asleep", fake_sleep)
    monkeypatch.setattr(retry, "monotonic", lambda: now[0])  # the call's deadline, on the same clock
    sent: list[float] = []
    server.handler = lambda request: (sent.append(now[0]), echo_or_fail(request))[1]
    kwargs = predictor_kwargs(
        model="openai/gpt-6-luna",
        actors=2,
        client_config=client_config(server),
        rate_limits={"openai": {"rpm": 10}},
        # One request at a time per actor: no other task can move the fake clock between a
        # request's admission and its arrival at the server, so the recorded times are exact.
        concurrency_per_actor=1,
    )
    actors = [FMClientPredictor(**kwargs), FMClientPredictor(**kwargs)]
    for actor in actors:  # each actor runs its batch; the clock is shared, as wall time is
        out = actor({"prompt": [f"p{i}" for i in range(12)]})
        assert out["error"] == [None] * 12
    assert len(sent) == 24
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 60) <= 10


def test_predictor_refuses_bad_settings_before_any_request(server: FakeServer) -> None:
    with pytest.raises(ConfigurationError, match="concurrency_per_actor"):
        FMClientPredictor(model="openai/gpt-6-luna", client_config=client_config(server), concurrency_per_actor=0)
    if importlib.util.find_spec("fmclient.limits") is None:
        with pytest.raises(ConfigurationError, match=r"rate_limits need fmclient\.limits"):
            FMClientPredictor(model="openai/gpt-6-luna", rate_limits={"openai": {"rpm": 5}})
    assert server.requests == []


def test_ray_example_processes_a_slice(ray_cluster: Any, server: FakeServer) -> None:
    """The example (10,000 rows by default) on 200 rows, joining the session's cluster."""
    import subprocess

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
        "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address,
        "OPENAI_API_KEY": "sk-test",
    }
    out = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "ray_batch.py"),
            *("--rows", "200", "--actors", "2", "--model", "openai/gpt-6-luna"),
            "--base-url",
            server.url + "/v1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "200 rows: 200 answered, 0 failed" in out.stdout
    assert len(server.requests) == 200


def test_ray_actors_on_a_local_cluster_share_one_limit_over_redis(
    ray_cluster: Any, server: FakeServer, tmp_path: Path
) -> None:
    """With [shared] the actors are not given a split: each could send the whole limit alone, and
    together they still send no more than it (the rows past it cannot start within their timeout)."""
    from tests.test_response_cache import RedisServer

    redis_server = RedisServer(tmp_path)
    try:
        config = {**client_config(server), "shared": {"url": redis_server.url, "namespace": "ray-test", "timeout": 5}}
        kwargs = predictor_kwargs(
            model="openai/gpt-6-luna", actors=2, client_config=config, rate_limits={"openai": {"rpm": 6}}, timeout=1.5
        )
        assert kwargs["rate_limits"] == {"openai": {"rpm": 6}}  # not split: 6 for each actor to take
        ds = ray_cluster.data.from_items([{"prompt": f"row {i}", "id": i} for i in range(16)])
        rows = ds.map_batches(FMClientPredictor, fn_constructor_kwargs=kwargs, concurrency=2, batch_size=4).take_all()
    finally:
        redis_server.stop()
    answered = [r for r in rows if r["error_type"] is None]
    refused = [r for r in rows if r["error_type"] is not None]
    assert len(rows) == 16
    assert len(answered) == len(server.requests) == 6  # the whole fleet's limit, no more
    assert {r["error_type"] for r in refused} == {"RateLimitError"}  # refused before sending, not lost
