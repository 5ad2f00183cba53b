"""Write this process's id to a file, then run a module as __main__ (same process): lets a test
kill exactly the MCP server it started. ``python run_module.py PIDFILE MODULE [ARGS...]``."""

from __future__ import annotations

import os
import runpy
import sys

with open(sys.argv[1], "w") as out:
    out.write(str(os.getpid()))
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
