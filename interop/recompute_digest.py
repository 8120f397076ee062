"""Recomputes, in Python, the digests a secure server publishes (see `secure_tools::integrity`): connects to the
server given as arguments over stdio with the MCP Python SDK, lists its tools, and for each recomputes the digest
from the listed definition with RFC 8785 (the `rfc8785` package) and SHA-256, then the list's digest. Prints one
JSON object: per tool the published and the recomputed digest, and the list's.
"""

import asyncio
import hashlib
import json
import sys

import rfc8785
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

DIGEST_KEY = "secure-tools/digest"
TOOLSET_KEY = "secure-tools/toolset-digest"


def as_jcs(value):
    """JSON numbers are doubles (RFC 8785): an integer beyond 2**53, a u64's maximum say, is the nearest one (the
    `rfc8785` package refuses such an integer itself)."""
    if isinstance(value, dict):
        return {k: as_jcs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_jcs(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return float(value)
    return value


def digest(value) -> str:
    return "sha256:" + hashlib.sha256(rfc8785.dumps(as_jcs(value))).hexdigest()


def definition(tool: dict) -> dict:
    tool = dict(tool)
    meta = dict(tool.get("_meta") or {})
    meta.pop(DIGEST_KEY, None)
    if meta:
        tool["_meta"] = meta
    else:
        tool.pop("_meta", None)
    return tool


async def main() -> None:
    params = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            result = await session.list_tools()
    tools = {}
    for tool in result.tools:
        listed = tool.model_dump(by_alias=True, exclude_none=True, mode="json")
        tools[tool.name] = {
            "published": (listed.get("_meta") or {}).get(DIGEST_KEY),
            "recomputed": digest(definition(listed)),
        }
    listed_meta = result.model_dump(by_alias=True, exclude_none=True, mode="json").get("_meta") or {}
    print(
        json.dumps(
            {
                "tools": tools,
                "toolset": {
                    "published": listed_meta.get(TOOLSET_KEY),
                    "recomputed": digest({name: t["recomputed"] for name, t in tools.items()}),
                },
            }
        )
    )


asyncio.run(main())
