"""A third-party MCP server for the tool-definition integrity tests: the MCP Python SDK's low-level server over
stdio, listing the tools whose definitions (MCP `Tool` objects, as JSON) the file named by TOOLS_FILE holds, read
again on every `tools/list`, so a test changes what the server lists while it runs. With NOTIFY=1, once a client
has listed the tools, the server also sends it `notifications/tools/list_changed` when the file changes (its
modification time, checked every 100 ms).
"""

import asyncio
import json
import os

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

TOOLS_FILE = os.environ["TOOLS_FILE"]


def load() -> list[types.Tool]:
    with open(TOOLS_FILE, encoding="utf-8") as f:
        return [types.Tool.model_validate(tool) for tool in json.load(f)]


_watching = False


async def notify_changes(session) -> None:
    seen = os.stat(TOOLS_FILE).st_mtime_ns
    while True:
        await asyncio.sleep(0.1)
        now = os.stat(TOOLS_FILE).st_mtime_ns
        if now != seen:
            seen = now
            await session.send_tool_list_changed()


async def list_tools(ctx, params) -> types.ListToolsResult:
    global _watching
    if os.environ.get("NOTIFY") == "1" and not _watching:
        _watching = True
        asyncio.get_running_loop().create_task(notify_changes(ctx.session))
    return types.ListToolsResult(tools=load())


async def call_tool(ctx, params) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])


server = Server("py-tools-server", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
