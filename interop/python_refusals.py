"""The HTTP runner's own refusals as the official MCP Python SDK (`mcp`) hands them to the application.

Usage: python interop/python_refusals.py

The server is already running over streamable HTTP with bearer authentication and `--max-message-bytes 1024`
(examples/file-server/tests/interop.rs starts it): $SECURE_FILE_SERVER_URL is its endpoint, $TOKEN_FULL a bearer
token granting `files.read files.write`.

- Without a token, `initialize` is refused `401`: the SDK raises `MCPError` whose message starts `missing_token`.
- With the token, a `write_file` whose body is over the limit is refused `413`: the SDK raises `MCPError(-32600)`
  whose message starts `body_too_large`; and the connection still serves the next call.

The SDK surfaces a non-2xx answer's reason only from a JSON-RPC error body; a `text/plain` one becomes
`-32603 "Server returned an error response"`. Exits non-zero with a message on the first mismatch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import Implementation

from interop_common import TIMEOUT_SECONDS, Mismatch, check, run_script, step


@asynccontextmanager
async def session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write, client_info=Implementation(name="interop-refusals", version="1")) as s:
                yield s


async def refused(what: str, action: Any) -> MCPError:
    try:
        result = await action()
    except MCPError as error:
        step(f"{what}: MCPError(code={error.code}, message={error.message!r})")
        return error
    raise Mismatch(f"{what}: returned instead of raising MCPError: {result!r}")


async def main_async(url: str, token: str) -> None:
    with anyio.fail_after(TIMEOUT_SECONDS):
        async with session(url, None) as anonymous:
            error = await refused("initialize without a token", anonymous.initialize)
            check(error.message.startswith("missing_token"), f"no token: {error.code} {error.message!r}")

        async with session(url, token) as s:
            await s.initialize()
            big = "x" * 4096
            error = await refused(
                "write_file over the body limit",
                lambda: s.call_tool("write_file", {"filename": "big.txt", "content": big}),
            )
            check(
                error.code == -32600 and error.message.startswith("body_too_large"),
                f"body over the limit: {error.code} {error.message!r}",
            )
            listed = await s.list_tools()
            check(any(t.name == "read_file" for t in listed.tools), f"tools/list after the refusal: {listed!r}")
            step("tools/list works after the refusal")


def main() -> int:
    url = os.environ.get("SECURE_FILE_SERVER_URL")
    token = os.environ.get("TOKEN_FULL")
    if not url or not token:
        print("FAIL: needs SECURE_FILE_SERVER_URL and TOKEN_FULL in the environment")
        return 2
    return run_script("refusals", lambda: main_async(url, token))


if __name__ == "__main__":
    sys.exit(main())
