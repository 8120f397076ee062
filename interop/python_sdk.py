"""Drives secure-file-server with the official MCP Python SDK (`mcp`, pinned in interop/requirements.txt).

Usage: python interop/python_sdk.py MODE [SERVER]      over stdio
       python interop/python_sdk.py http MODE            over streamable HTTP, with bearer tokens

MODE is `session` (a `ClientSession` with the legacy `initialize` handshake) or `client-auto` (`mcp.Client` in
its default `auto` mode, which probes `server/discover` first and falls back to `initialize`). SERVER is the
server binary; default: $SECURE_FILE_SERVER.

Over stdio, the server is started twice on a fresh data root holding `greeting.txt`: granted
`files.read,files.write`, the client lists the tools, reads the greeting and writes a file; granted `files.read`
only, it reads again (without listing first, so the SDK lists the tools itself to check the structured result)
and is refused the write, as an `isError` result naming `missing_scope:files.write`.

Over HTTP, the server is already running, with bearer authentication (examples/file-server/tests/interop.rs
starts it): $SECURE_FILE_SERVER_URL is its endpoint, $TOKEN_FULL and $TOKEN_READ bearer tokens granting
`files.read files.write` and `files.read`, $SECURE_FILE_SERVER_DATA_ROOT its data root (this script writes
`greeting.txt` there) and $SECURE_FILE_SERVER_AUDIT_LOG its audit log. The client connects once per token, the
token sent as `Authorization: Bearer` by the httpx client it is given, and makes the same calls; the refused
write is a 403 that the SDK raises as `MCPError(-32003, "missing_scope:files.write")`, and a read after it
shows the connection still serves calls.

Then the audit log must hold exactly one `tool_call` record per call made, with the expected outcomes. Exits
non-zero with a message on the first mismatch.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import Implementation

from interop_common import TIMEOUT_SECONDS, Mismatch, audit_records, check, run_script, step, text_of

GREETING = "Hello from the interop test.\n"
WRITTEN = "Written by the Python SDK.\nSecond line.\n"

MODES = {
    # mode: (expected session lifecycle in the audit, expected protocol version)
    "session": ("initialize", "2025-11-25"),
    "client-auto": ("stateless", "2026-07-28"),
}


Streams = Any  # (read stream, write stream), as a transport yields them


class Fixture:
    """The data root and audit log of one run, and the calls made, in order, with the outcome each should get."""

    def __init__(self, data: Path, audit: Path, owned: Path | None) -> None:
        self.data = data
        self.audit = audit
        self.owned = owned  # a temporary directory this script made, removed after a pass
        (self.data / "greeting.txt").write_text(GREETING)
        self.calls: list[tuple[str, str]] = []  # (tool, expected outcome), in call order

    def records(self) -> list[dict[str, Any]]:
        return audit_records(self.audit)

    def cleanup(self) -> None:
        """Removes the temporary directory this script made, if any."""
        if self.owned is not None:
            shutil.rmtree(self.owned, ignore_errors=True)


class Stdio:
    """The server binary, started over stdio for each connection, granted the scopes in `MCP_SCOPES`."""

    name = "stdio"
    SCOPES = {"full": "files.read,files.write", "read": "files.read"}

    def __init__(self, server: str, mode: str) -> None:
        self.server = server
        owned = Path(tempfile.mkdtemp(prefix=f"interop-python-{mode}-"))
        data = owned / "data"
        data.mkdir()
        # Outside the data root, as the server requires.
        self.fixture = Fixture(data, owned / "audit.jsonl", owned)

    def transport(self, grant: str) -> AbstractAsyncContextManager[Streams]:
        return stdio_client(
            StdioServerParameters(
                command=self.server,
                args=[],
                env={
                    "DATA_ROOT": str(self.fixture.data),
                    "MCP_SCOPES": self.SCOPES[grant],
                    "MCP_SERVER_ID": "interop-python",
                    "MCP_AUDIT_LOG": str(self.fixture.audit),
                },
            )
        )

    async def refused_write(self, session: ClientSession | Client, who: str) -> str:
        """Over stdio a refusal is a tool result with `isError: true`, its code in the text."""
        refused = await session.call_tool("write_file", {"filename": "refused.txt", "content": "no"})
        check(refused.is_error is True, f"{who}: write_file under files.read was not an isError result: {refused!r}")
        check(
            "missing_scope:files.write" in text_of(refused),
            f"{who}: the refusal's text lacks missing_scope:files.write: {text_of(refused)!r}",
        )
        return repr(text_of(refused))

    def sessions(self, lifecycle: str, version: str) -> list[tuple[str, str]]:
        # One server process, so one session record, per connection.
        return [(lifecycle, version)] * 2


class Http:
    """The server already running over streamable HTTP with bearer authentication; one token per grant."""

    name = "http"

    def __init__(self) -> None:
        names = [
            "SECURE_FILE_SERVER_URL",
            "TOKEN_FULL",
            "TOKEN_READ",
            "SECURE_FILE_SERVER_DATA_ROOT",
            "SECURE_FILE_SERVER_AUDIT_LOG",
        ]
        missing = [name for name in names if not os.environ.get(name)]
        if missing:
            raise Mismatch(f"http mode needs {', '.join(missing)} in the environment")
        self.url = os.environ["SECURE_FILE_SERVER_URL"]
        self.tokens = {"full": os.environ["TOKEN_FULL"], "read": os.environ["TOKEN_READ"]}
        self.fixture = Fixture(
            Path(os.environ["SECURE_FILE_SERVER_DATA_ROOT"]), Path(os.environ["SECURE_FILE_SERVER_AUDIT_LOG"]), None
        )

    @asynccontextmanager
    async def transport(self, grant: str) -> AsyncIterator[Streams]:
        # The SDK's documented way to send headers: an httpx client of one's own (not closed by the transport).
        headers = {"Authorization": f"Bearer {self.tokens[grant]}"}
        async with httpx2.AsyncClient(headers=headers) as http:
            async with streamable_http_client(self.url, http_client=http) as streams:
                yield streams

    async def refused_write(self, session: ClientSession | Client, who: str) -> str:
        """Over HTTP the server answers 403 `insufficient_scope` with a JSON-RPC error, which the SDK raises."""
        try:
            result = await session.call_tool("write_file", {"filename": "refused.txt", "content": "no"})
        except MCPError as error:
            check(error.code == -32003, f"{who}: the refusal's MCPError code is {error.code}, expected -32003")
            check(
                error.message == "missing_scope:files.write",
                f"{who}: the refusal's MCPError message is {error.message!r}, expected 'missing_scope:files.write'",
            )
            data = error.data if isinstance(error.data, dict) else {}
            check(
                data.get("code") == "missing_scope:files.write" and data.get("requiredScopes") == ["files.write"],
                f"{who}: the refusal's MCPError data is {error.data!r}",
            )
            return f"MCPError(code={error.code}, message={error.message!r})"
        raise Mismatch(f"{who}: write_file under files.read returned instead of raising MCPError: {result!r}")

    def sessions(self, lifecycle: str, version: str) -> list[tuple[str, str]]:
        # Every `initialize` is audited as a session's start, over HTTP too; over stateless HTTP a request that
        # negotiates inline starts no session (each request stands alone).
        return [(lifecycle, version)] * 2 if lifecycle == "initialize" else []


Target = Stdio | Http


async def call(fixture: Fixture, session: ClientSession | Client, tool: str, args: dict[str, Any], outcome: str):
    fixture.calls.append((tool, outcome))
    return await session.call_tool(tool, args)


async def full_grant(target: Target, session: ClientSession | Client, who: str) -> None:
    fixture = target.fixture
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


async def read_only_grant(target: Target, session: ClientSession | Client, who: str) -> None:
    fixture = target.fixture
    # No tools/list first: the SDK lists the tools itself to check read_file's structured result against its
    # output schema. That list is not a tool call and must not show up as one in the audit.
    read = await call(fixture, session, "read_file", {"filename": "greeting.txt"}, "ok")
    check(not read.is_error and text_of(read) == GREETING, f"{who}: read_file (read-only grant): {read!r}")
    step(f"{who}: read_file works under files.read")

    fixture.calls.append(("write_file", "denied"))
    shown = await target.refused_write(session, who)
    check(not (fixture.data / "refused.txt").exists(), f"{who}: the refused write created refused.txt")
    step(f"{who}: write_file refused with {shown}")

    if isinstance(target, Http):
        # A 403 answer must not have broken the client's transport.
        read = await call(fixture, session, "read_file", {"filename": "greeting.txt"}, "ok")
        check(not read.is_error and text_of(read) == GREETING, f"{who}: read_file after the refusal: {read!r}")
        step(f"{who}: read_file works after the refusal")


async def run_session(target: Target, grant: str, body) -> str:
    async with target.transport(grant) as (read, write):
        async with ClientSession(read, write, client_info=Implementation(name="interop-python", version="1")) as s:
            result = await s.initialize()
            version = result.protocol_version
            await body(target, s, f"ClientSession/{target.name}/{version}")
            return version


async def run_client_auto(target: Target, grant: str, body) -> str:
    client = Client(
        target.transport(grant), mode="auto", client_info=Implementation(name="interop-python", version="1")
    )
    async with client:
        version = client.protocol_version
        await body(target, client, f"Client(auto)/{target.name}/{version}")
        return version


def check_audit(target: Target, lifecycle: str, version: str) -> None:
    fixture = target.fixture
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
    expected = target.sessions(lifecycle, version)
    check(sessions == expected, f"audit: sessions {sessions}, expected {expected}")
    starts = sum(1 for r in records if r.get("event") == "server_start")
    step(
        f"audit: {len(calls)} tool_call records, one per call, outcomes {[o for _, o in got]}; "
        f"{len(sessions)} sessions, {starts} server starts"
    )


async def main_async(mode: str, target: Target) -> None:
    lifecycle, expected_version = MODES[mode]
    runner = run_session if mode == "session" else run_client_auto
    with anyio.fail_after(TIMEOUT_SECONDS):
        version = await runner(target, "full", full_grant)
        check(version == expected_version, f"negotiated {version}, expected {expected_version}")
        version = await runner(target, "read", read_only_grant)
        check(version == expected_version, f"negotiated {version}, expected {expected_version}")
    check_audit(target, lifecycle, expected_version)


def main() -> int:
    args = sys.argv[1:]
    over_http = bool(args) and args[0] == "http"
    if over_http:
        args = args[1:]
    if not args or args[0] not in MODES:
        modes = "|".join(MODES)
        print(f"usage: {sys.argv[0]} {{{modes}}} [SERVER]\n       {sys.argv[0]} http {{{modes}}}", file=sys.stderr)
        return 2
    mode = args[0]
    if over_http:
        try:
            target: Target = Http()
        except Mismatch as error:
            print(f"FAIL: {error}")
            return 2
    else:
        server = args[1] if len(args) > 1 else os.environ.get("SECURE_FILE_SERVER", "")
        if not server or not os.access(server, os.X_OK):
            print(f"FAIL: no server binary: pass it as an argument or set SECURE_FILE_SERVER (got {server!r})")
            return 2
        target = Stdio(server, mode)
    fixture = target.fixture
    label = f"{mode} over {target.name}"
    print(f"python-sdk {label}: mcp {package_version('mcp')}, data root {fixture.data}", flush=True)
    return run_script(label, lambda: main_async(mode, target), fixture.audit, fixture.cleanup)


if __name__ == "__main__":
    sys.exit(main())
