"""Classify 10,000 prompts on Ray Data with fmclient: one Client per actor, limits split over the actors.

    pip install "fmclient[ray,openai]"
    OPENAI_API_KEY=... python examples/ray_batch.py                  # 10,000 rows, 4 actors
    python examples/ray_batch.py --rows 200 --base-url http://127.0.0.1:8000/v1   # a small slice, a local server

On a cluster, set RAY_ADDRESS (or run it with ``ray job submit``); alone it starts a local Ray.
"""

from __future__ import annotations

import argparse
import os
import time

import ray

from fmclient.ray import FMClientPredictor, predictor_kwargs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("ROWS", "10000")))
    parser.add_argument("--model", default="gpt-luna")
    parser.add_argument("--base-url", help="an OpenAI-compatible server instead of api.openai.com")
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--rpm", type=int, help="requests per minute for the whole cluster (needs fmclient.limits)")
    args = parser.parse_args()

    # An OpenAI-compatible server speaks Chat Completions (OpenAI's own API prefers the Responses API
    # for its current models, and fmclient uses it there).
    providers = {"openai": {"base_url": args.base_url, "api": "chat"}} if args.base_url else {}
    # The actors run in worker processes, perhaps on other machines: the key travels in Ray's
    # runtime environment (Ray's own way to ship environment variables), not in the task arguments.
    keys = {name: os.environ[name] for name in ("OPENAI_API_KEY",) if name in os.environ}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env={"env_vars": keys}, log_to_driver=False)  # join the running cluster
    else:
        ray.init(num_cpus=args.actors, runtime_env={"env_vars": keys}, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False

    # from_items needs no read tasks: every CPU can go to the actors, which wait on the network.
    reviews = ray.data.from_items(
        [{"id": i, "prompt": f"Is review #{i} positive or negative? One word."} for i in range(args.rows)]
    )
    started = time.perf_counter()
    labelled = reviews.map_batches(
        FMClientPredictor,
        fn_constructor_kwargs=predictor_kwargs(
            model=args.model,
            actors=args.actors,
            client_config={"providers": providers},
            rate_limits={"openai": {"rpm": args.rpm}} if args.rpm else None,
            concurrency_per_actor=32,
            max_tokens=5,
        ),
        concurrency=args.actors,
        batch_size=250,
    )
    rows = labelled.take_all()
    took = time.perf_counter() - started
    failed = [row for row in rows if row["error"] is not None]
    costs = [row["cost"] for row in rows if row["cost"] is not None]
    tokens = sum(row["input_tokens"] + row["output_tokens"] for row in rows)
    print(f"{len(rows)} rows: {len(rows) - len(failed)} answered, {len(failed)} failed in {took:.1f} s")
    print(f"tokens {tokens:,}; cost ${sum(costs):.4f} ({len(costs)} rows priced)")
    for row in failed[:3]:
        print(f"  row {row['id']}: {row['error_type']}: {row['error']}")


if __name__ == "__main__":
    main()
