"""Drives secure-file-server with the official MCP Python SDK (`mcp`, pinned in interop/requirements.txt).

Usage: python interop/python_sdk.py MODE [SERVER]

MODE is `session` (a `ClientSession` with the legacy `initialize` handshake) or `client-auto` (`mcp.Client` in
its default `auto` mode, which probes `server/discover` first and falls back to `initialize`). SERVER is the
server binary; default: $SECURE_FILE_SERVER.

The server is started twice over stdio on a fresh data root holding `greeting.txt`: granted
`files.read,files.write`, the client lists the tools, reads the greeting and writes a file; granted `files.read`
only, it reads again (without listing first, so the SDK lists the tools itself to check the structured result)
and is refused the write. Then the audit log must hold exactly one `tool_call` record per call made, with the
expected outcomes. Exits non-zero with a message on the first mismatch.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import traceback
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, Implementation, TextContent

GREETING = "Hello from the interop test.\n"
WRITTEN = "Written by the Python SDK.\nSecond line.\n"
TIMEOUT_SECONDS = 60

MODES = {
    # mode: (expected session lifecycle in the audit, expected protocol version)
    "session": ("initialize", "2025-11-25"),
    "client-auto": ("stateless", "2026-07-28"),
}


class Mismatch(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def step(message: str) -> None:
    print(f"ok: {message}", flush=True)


def text_of(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


class Fixture:
    def __init__(self, server: str, mode: str) -> None:
        self.server = server
        self.dir = Path(tempfile.mkdtemp(prefix=f"interop-python-{mode}-"))
        self.data = self.dir / "data"
        self.data.mkdir()
        (self.data / "greeting.txt").write_text(GREETING)
        # Outside the data root, as the server requires.
        self.audit = self.dir / "audit.jsonl"
        self.calls: list[tuple[str, str]] = []  # (tool, expected outcome), in call order

    def params(self, scopes: str) -> StdioServerParameters:
        return StdioServerParameters(
            command=self.server,
            args=[],
            env={
                "DATA_ROOT": str(self.data),
                "MCP_SCOPES": scopes,
                "MCP_SERVER_ID": "interop-python",
                "MCP_AUDIT_LOG": str(self.audit),
            },
        )

    def records(self) -> list[dict[str, Any]]:
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]


async def call(fixture: Fixture, session: ClientSession | Client, tool: str, args: dict[str, Any], outcome: str):
    fixture.calls.append((tool, outcome))
    return await session.call_tool(tool, args)


async def full_grant(fixture: Fixture, session: ClientSession | Client, who: str) -> None:
    listed = await session.list_tools()
    names = sorted(tool.name for tool in listed.tools)
    check("read_file" in names and "write_file" in names, f"{who}: tools/list lacks read_file or write_file: {names}")
    step(f"{who}: tools/list shows {names}")

    read = await call(fixture, session, "read_file", {"filename": "greeting.txt"}, "ok")
    check(not read.is_error, f"{who}: read_file failed: {text_of(read)}")
    check(text_of(read) == GREETING, f"{who}: read_file text {text_of(read)!r}, expected {GREETING!r}")
    structured = read.structured_content or {}
    check(structured.get("content") == GREETING, f"{who}: read_file structuredContent {structured!r}")
    step(f"{who}: read_file returned the greeting")

    wrote = await call(fixture, session, "write_file", {"filename": "notes.txt", "content": WRITTEN}, "ok")
    check(not wrote.is_error, f"{who}: write_file failed: {text_of(wrote)}")
    structured = wrote.structured_content or {}
    check(structured.get("status") == "created", f"{who}: write_file structuredContent {structured!r}")
    on_disk = (fixture.data / "notes.txt").read_text() if (fixture.data / "notes.txt").exists() else None
    check(on_disk == WRITTEN, f"{who}: notes.txt on disk is {on_disk!r}, expected {WRITTEN!r}")
    step(f"{who}: write_file created notes.txt with the content sent")


async def read_only_grant(fixture: Fixture, session: ClientSession | Client, who: str) -> None:
    # No tools/list first: the SDK lists the tools itself to check read_file's structured result against its
    # output schema. That list is not a tool call and must not show up as one in the audit.
    read = await call(fixture, session, "read_file", {"filename": "greeting.txt"}, "ok")
    check(not read.is_error and text_of(read) == GREETING, f"{who}: read_file (read-only grant): {read!r}")
    step(f"{who}: read_file works under files.read")

    refused = await call(fixture, session, "write_file", {"filename": "refused.txt", "content": "no"}, "denied")
    check(refused.is_error is True, f"{who}: write_file under files.read was not an isError result: {refused!r}")
    check(
        "missing_scope:files.write" in text_of(refused),
        f"{who}: the refusal's text lacks missing_scope:files.write: {text_of(refused)!r}",
    )
    check(not (fixture.data / "refused.txt").exists(), f"{who}: the refused write created refused.txt")
    step(f"{who}: write_file refused with {text_of(refused)!r}")


async def run_session(fixture: Fixture, scopes: str, body) -> str:
    async with stdio_client(fixture.params(scopes)) as (read, write):
        async with ClientSession(read, write, client_info=Implementation(name="interop-python", version="1")) as s:
            result = await s.initialize()
            version = result.protocol_version
            await body(fixture, s, f"ClientSession/{version}")
            return version


async def run_client_auto(fixture: Fixture, scopes: str, body) -> str:
    client = Client(
        fixture.params(scopes), mode="auto", client_info=Implementation(name="interop-python", version="1")
    )
    async with client:
        version = client.protocol_version
        await body(fixture, client, f"Client(auto)/{version}")
        return version


def check_audit(fixture: Fixture, lifecycle: str, version: str) -> None:
    records = fixture.records()
    calls = [r for r in records if r.get("event") == "tool_call"]
    made = [tool for tool, _ in fixture.calls]
    got = [(r.get("tool"), r.get("outcome")) for r in calls]
    check(
        len(calls) == len(fixture.calls),
        f"audit: {len(calls)} tool_call records for {len(fixture.calls)} calls made\n  made: {made}\n  audited: {got}",
    )
    check(got == fixture.calls, f"audit: tool_call records {got}, expected {fixture.calls}")
    denied = [r for r in calls if r.get("outcome") == "denied"]
    check(
        all(r.get("error") == "missing_scope:files.write" for r in denied),
        f"audit: denied records {denied}",
    )
    writes = [r for r in calls if r.get("tool") == "write_file"]
    check(
        all(r.get("inputs", {}).get("content", {}).get("redacted") is True for r in writes),
        f"audit: write_file content not redacted: {writes}",
    )
    rejected = [r for r in records if r.get("event") == "message_rejected"]
    check(not rejected, f"audit: the server rejected messages from the client: {rejected}")
    sessions = [(r.get("lifecycle"), r.get("protocol_version")) for r in records if r.get("event") == "session"]
    check(
        sessions == [(lifecycle, version)] * 2,
        f"audit: sessions {sessions}, expected two {lifecycle} sessions at {version}",
    )
    starts = sum(1 for r in records if r.get("event") == "server_start")
    step(
        f"audit: {len(calls)} tool_call records, one per call, outcomes {[o for _, o in got]}; "
        f"{len(sessions)} sessions, {starts} server starts"
    )


async def main_async(mode: str, fixture: Fixture) -> None:
    lifecycle, expected_version = MODES[mode]
    runner = run_session if mode == "session" else run_client_auto
    with anyio.fail_after(TIMEOUT_SECONDS):
        version = await runner(fixture, "files.read,files.write", full_grant)
        check(version == expected_version, f"negotiated {version}, expected {expected_version}")
        version = await runner(fixture, "files.read", read_only_grant)
        check(version == expected_version, f"negotiated {version}, expected {expected_version}")
    check_audit(fixture, lifecycle, expected_version)


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, which anyio's task groups raise."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in MODES:
        print(f"usage: {sys.argv[0]} {{{'|'.join(MODES)}}} [SERVER]", file=sys.stderr)
        return 2
    mode = sys.argv[1]
    server = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("SECURE_FILE_SERVER", "")
    if not server or not os.access(server, os.X_OK):
        print(f"FAIL: no server binary: pass it as an argument or set SECURE_FILE_SERVER (got {server!r})")
        return 2
    fixture = Fixture(server, mode)
    print(f"python-sdk {mode}: mcp {package_version('mcp')}, temp dir {fixture.dir}", flush=True)
    try:
        anyio.run(main_async, mode, fixture)
    except BaseException as error:  # a mismatch, an SDK exception, a timeout
        if not isinstance(error, Mismatch):
            traceback.print_exc()
        print(f"audit log ({fixture.audit}):", flush=True)
        for record in fixture.records():
            print(f"  {json.dumps(record)}", flush=True)
        causes = "; ".join(
            f"timed out after {TIMEOUT_SECONDS} s" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
            for e in leaves(error)
        )
        print(f"FAIL (python-sdk {mode}): {causes}", flush=True)
        return 1
    shutil.rmtree(fixture.dir, ignore_errors=True)
    print(f"PASS python-sdk {mode}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
