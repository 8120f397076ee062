"""Calls secure-file-server over stdio with the official MCP Python SDK, the caller's trace in `_meta`.

Usage: python interop/py_traced_calls.py SERVER TRACEPARENT

The server is started by the SDK's stdio client with the environment this script was given (the OpenTelemetry
variables among them: examples/file-server/tests/observability.rs points them at its OTLP receiver). Makes three
calls: `write_file` of `traced.txt` with `_meta: {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}`, then
`read_file` of it without a trace, then `write_file` of `../escape.txt` (refused: `invalid`). Prints one JSON line:
what each call returned (`is_error`), and exits non-zero on anything unexpected. Closing the session ends the
server, which exports what it still holds before it exits.
"""

from __future__ import annotations

import json
import os
import sys

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client


async def main(server: str, traceparent: str) -> None:
    params = StdioServerParameters(command=server, args=[], env=dict(os.environ))
    results = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        written = await session.call_tool(
            "write_file",
            {"filename": "traced.txt", "content": "traced\n"},
            meta={"traceparent": traceparent, "tracestate": "vendor=abc"},
        )
        results["write_file"] = written.is_error
        read_back = await session.call_tool("read_file", {"filename": "traced.txt"})
        results["read_file"] = read_back.is_error
        escaped = await session.call_tool("write_file", {"filename": "../escape.txt", "content": "x"})
        results["escape"] = escaped.is_error
    print(json.dumps(results))
    if results != {"write_file": False, "read_file": False, "escape": True}:
        sys.exit(f"unexpected results: {results}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    anyio.run(main, sys.argv[1], sys.argv[2])
