"""Secure tools that ask the client questions, answered by the official MCP Python SDK (`mcp`, pinned in
interop/requirements.txt) under the stateless revision 2026-07-28 (multi-round-trip requests, SEP-2322).

Usage: python interop/python_input_required.py [SERVER]     over stdio
       python interop/python_input_required.py http          over streamable HTTP

`mcp.Client` in its default `auto` mode, with an `elicitation_callback` and a `sampling_callback`, calls three
tools of the test server (tests/bin/test-server.rs): `confirm` (one elicitation form, accepted with
`{"confirm": true}`), `confirm_twice` (two forms in sequence, answered by their message: a name, then `true`) and
`summarize` (one sampling request, answered with a text message from a model of this script's). The server may not
send the client requests under 2026-07-28, so each question comes back in an `input_required` result; the SDK runs
its callbacks and calls the tool again with the answers (`inputResponses`) and the echoed `requestState`, until
the result is complete. The final texts must hold the answers: for `confirm_twice` both, the first of which only
`requestState` carries into the last round (the server keeps nothing between rounds).

Over stdio the script starts the server (SERVER, default $TEST_SERVER) granted `test.read test.write`, with its
audit log and standard error in a temporary directory. Over HTTP the server is already running
(tests/interop_input_required.rs starts it): $TEST_SERVER_URL is its endpoint, $TEST_SERVER_AUDIT_LOG its audit log,
$TEST_SERVER_STDERR (optional) the file its standard error goes to.

Then the audit log must hold one `tool_call` record per round, per tool in order: `input_required` for each round
that asked, `ok` for the last; all over the transport used; no message rejected. The name answered is a
distinctive string that must appear in no audit record, nor on the server's standard error. Exits non-zero with a
message on the first mismatch.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.context import ClientRequestContext
from mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestFormParams,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    Implementation,
    TextContent,
)

from interop_common import TIMEOUT_SECONDS, Mismatch, audit_records, check, run_script, step, text_of

PROTOCOL = "2026-07-28"
# The name answered to `confirm_twice`: distinctive, so finding it in the audit or on stderr is never a coincidence.
NAME = "Quokka-Python-4411"
MODEL = "interop-python-model"
SUMMARY = "Brief."
TEXT = "a long text to summarize"

# The `tool_call` records each tool's calls should leave, one per round, in order.
EXPECTED_ROUNDS = {
    "confirm": ["input_required", "ok"],
    "confirm_twice": ["input_required", "input_required", "ok"],
    "summarize": ["input_required", "ok"],
}


class Target:
    """Where the server is, its audit log and standard error, and what its records' `transport` says."""

    name: str
    audit: Path
    stderr: Path | None
    owned: Path | None = None  # a temporary directory this script made, removed after a pass

    def transport(self) -> Any:
        raise NotImplementedError

    def records(self) -> list[dict[str, Any]]:
        return audit_records(self.audit)

    def cleanup(self) -> None:
        """Removes the temporary directory this script made, if any."""
        if self.owned is not None:
            shutil.rmtree(self.owned, ignore_errors=True)


class Stdio(Target):
    """The server binary, started by the SDK's stdio transport."""

    name = "stdio"

    def __init__(self, server: str) -> None:
        self.server = server
        self.owned = Path(tempfile.mkdtemp(prefix="interop-python-input-required-"))
        self.audit = self.owned / "audit.jsonl"
        self.stderr = self.owned / "stderr.log"

    @asynccontextmanager
    async def transport(self) -> AsyncIterator[Any]:
        parameters = StdioServerParameters(
            command=self.server,
            args=[],
            env={
                "MCP_SCOPES": "test.read test.write",
                "MCP_SERVER_ID": "interop-python-input-required",
                "MCP_AUDIT_LOG": str(self.audit),
            },
        )
        with self.stderr.open("w") as errlog:
            async with stdio_client(parameters, errlog=errlog) as streams:
                yield streams


class Http(Target):
    """The server already running over streamable HTTP (unauthenticated, on loopback)."""

    name = "http"

    def __init__(self) -> None:
        missing = [name for name in ("TEST_SERVER_URL", "TEST_SERVER_AUDIT_LOG") if not os.environ.get(name)]
        if missing:
            raise Mismatch(f"http mode needs {', '.join(missing)} in the environment")
        self.url = os.environ["TEST_SERVER_URL"]
        self.audit = Path(os.environ["TEST_SERVER_AUDIT_LOG"])
        stderr = os.environ.get("TEST_SERVER_STDERR")
        self.stderr = Path(stderr) if stderr else None

    def transport(self) -> Any:
        # A URL: the SDK's own streamable HTTP transport.
        return self.url


class Answers:
    """The client's callbacks, and the questions they were asked, in order."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def elicit(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        if not isinstance(params, ElicitRequestFormParams):
            return ErrorData(code=-32602, message=f"not a form: {params!r}")
        self.asked.append(f"elicitation: {params.message}")
        required = params.requested_schema.get("required")
        if params.message == "Your name?" and required == ["name"]:
            return ElicitResult(action="accept", content={"name": NAME})
        if params.message == "Go ahead?" and required == ["confirm"]:
            return ElicitResult(action="accept", content={"confirm": True})
        return ErrorData(code=-32602, message=f"unexpected question: {params!r}")

    async def sample(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData:
        prompts = [m.content.text for m in params.messages if isinstance(m.content, TextContent)]
        self.asked.append(f"sampling: {' | '.join(prompts)}")
        if prompts != [f"Summarize: {TEXT}"] or params.max_tokens != 10:
            return ErrorData(code=-32602, message=f"unexpected sampling request: {params!r}")
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text=SUMMARY), model=MODEL)


async def calls(target: Target) -> None:
    answers = Answers()
    client = Client(
        target.transport(),
        mode="auto",
        elicitation_callback=answers.elicit,
        sampling_callback=answers.sample,
        client_info=Implementation(name="interop-python-input-required", version="1"),
    )
    async with client:
        version = client.protocol_version
        check(version == PROTOCOL, f"negotiated {version}, expected {PROTOCOL}")
        step(f"negotiated {version}")

        confirmed = await client.call_tool("confirm", {})
        check(not confirmed.is_error, f"confirm failed: {confirmed!r}")
        check(text_of(confirmed) == 'Accept {"confirm":true}', f"confirm answered {text_of(confirmed)!r}")
        check(answers.asked == ["elicitation: Go ahead?"], f"confirm: the client was asked {answers.asked}")
        step(f"confirm: the elicitation callback answered, result {text_of(confirmed)!r}")

        answers.asked.clear()
        twice = await client.call_tool("confirm_twice", {})
        check(not twice.is_error, f"confirm_twice failed: {twice!r}")
        expected = f'{{"name":"{NAME}"}} {{"confirm":true}}'
        check(text_of(twice) == expected, f"confirm_twice answered {text_of(twice)!r}, expected {expected!r}")
        asked = ["elicitation: Your name?", "elicitation: Go ahead?"]
        check(answers.asked == asked, f"confirm_twice: the client was asked {answers.asked}, expected {asked}")
        step(f"confirm_twice: both answers in the result, {text_of(twice)!r}")

        answers.asked.clear()
        summary = await client.call_tool("summarize", {"text": TEXT})
        check(not summary.is_error, f"summarize failed: {summary!r}")
        model, said, content = text_of(summary).partition(" said ")
        check(
            model == MODEL and said and json.loads(content or "null") == {"type": "text", "text": SUMMARY},
            f"summarize answered {text_of(summary)!r}",
        )
        check(answers.asked == [f"sampling: Summarize: {TEXT}"], f"summarize: the client was asked {answers.asked}")
        step(f"summarize: the sampling callback answered, result {text_of(summary)!r}")


def check_audit(target: Target) -> None:
    records = target.records()
    tool_calls = [r for r in records if r.get("event") == "tool_call"]
    got = [(r.get("tool"), r.get("outcome")) for r in tool_calls]
    expected = [(tool, outcome) for tool, outcomes in EXPECTED_ROUNDS.items() for outcome in outcomes]
    check(got == expected, f"audit: tool_call records {got}, expected {expected}")
    transports = {r.get("transport") for r in tool_calls}
    check(transports == {target.name}, f"audit: tool_call records over {transports}, expected {target.name}")
    rejected = [r for r in records if r.get("event") == "message_rejected"]
    check(not rejected, f"audit: the server rejected messages from the client: {rejected}")
    check(NAME not in target.audit.read_text(), f"audit: the name answered ({NAME}) is in a record")
    for tool, outcomes in EXPECTED_ROUNDS.items():
        step(f"audit: {tool}: {len(outcomes)} rounds, outcomes {outcomes}")
    step(f"audit: {len(records)} records, none holding the name answered")
    if target.stderr is not None:
        said = target.stderr.read_text() if target.stderr.exists() else ""
        check(NAME not in said, f"the name answered ({NAME}) is on the server's stderr: {said}")
        step("the server's stderr does not hold the name answered")


async def main_async(target: Target) -> None:
    with anyio.fail_after(TIMEOUT_SECONDS):
        await calls(target)
    check_audit(target)


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["http"]:
        try:
            target: Target = Http()
        except Mismatch as error:
            print(f"FAIL: {error}")
            return 2
    elif len(args) <= 1:
        server = args[0] if args else os.environ.get("TEST_SERVER", "")
        if not server or not os.access(server, os.X_OK):
            print(f"FAIL: no server binary: pass it as an argument or set TEST_SERVER (got {server!r})")
            return 2
        target = Stdio(server)
    else:
        print(f"usage: {sys.argv[0]} [SERVER]\n       {sys.argv[0]} http", file=sys.stderr)
        return 2
    label = f"input_required over {target.name}"
    print(f"python-sdk {label}: mcp {package_version('mcp')}, audit log {target.audit}", flush=True)
    return run_script(label, lambda: main_async(target), target.audit, target.cleanup)


if __name__ == "__main__":
    sys.exit(main())
