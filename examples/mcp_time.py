"""Tools from an MCP server: the reference time server (pip install mcp-server-time), over stdio.

    python examples/mcp_time.py                   # needs a key for the model (claude-sonnet)
    python examples/mcp_time.py --offline         # the model's replies scripted by fmclient's mock

The server runs as a subprocess for as long as the `with` block; its tools are listed from it.
"""

import sys

from fmclient import Client
from fmclient.mcp import MCPTools

# The server as a module of this Python, so the example finds it in any virtualenv.
SERVER = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]


def main() -> None:
    with MCPTools.stdio(SERVER, prefix="time_") as time_tools, Client() as client:
        print("tools:", ", ".join(t.name for t in time_tools.loop_tools()))
        run = client.run("What time is it in Tokyo right now?", tools=[time_tools], model="claude-sonnet")
        for step in run.steps:
            for result in step.tool_results:
                print(f"{result.name} -> {result.text}")
        print(run.text)
        print(f"-- stopped={run.stopped}, steps={len(run.steps)}")


if __name__ == "__main__":
    if "--offline" in sys.argv:
        from fmclient.testing import MockProvider

        with MockProvider() as mock:
            mock.add_tool_call("time_get_current_time", {"timezone": "Asia/Tokyo"})
            mock.add_reply("It is evening in Tokyo.")
            main()
    else:
        main()
