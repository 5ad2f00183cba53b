"""A tool loop: the model calls two tools (in parallel), gets their results, and answers.

python examples/agent_loop.py                 # needs a key for the model (claude-sonnet)
python examples/agent_loop.py --offline       # the model's replies scripted by fmclient's mock
"""

import sys

from fmclient import Client


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return {"Oslo": "3C and sunny", "Rome": "18C and cloudy"}.get(city, "unknown")


async def convert(celsius: float) -> float:
    """Celsius to Fahrenheit."""
    return round(celsius * 9 / 5 + 32, 1)


def main() -> None:
    client = Client()
    run = client.run(
        "What is the weather in Oslo and in Rome, and what is 3C in Fahrenheit?",
        tools=[get_weather, convert],
        model="claude-sonnet",
        max_steps=5,
    )
    for step in run.steps:
        for call, result in zip(step.tool_calls, step.tool_results, strict=True):
            print(f"step {step.number}: {call.name}({call.arguments}) -> {result.text}")
    print(run.text)
    cost = f"${run.cost.total:.6f}" if run.cost is not None else f"unknown ({run.cost_reason})"
    print(f"-- stopped={run.stopped}, steps={len(run.steps)}, tokens={run.usage.total_tokens}, cost={cost}")


if __name__ == "__main__":
    if "--offline" in sys.argv:
        from fmclient.testing import MockProvider

        with MockProvider() as mock:
            mock.add_reply(
                tool_calls=[
                    {"name": "get_weather", "arguments": {"city": "Oslo"}},
                    {"name": "get_weather", "arguments": {"city": "Rome"}},
                ]
            )
            mock.add_tool_call("convert", {"celsius": 3})
            mock.add_reply("Oslo: 3C and sunny (37.4F). Rome: 18C and cloudy.")
            main()
    else:
        main()
