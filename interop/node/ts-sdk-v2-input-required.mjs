// Secure tools that ask the client questions, answered by the TypeScript SDK v2 (`@modelcontextprotocol/client`)
// in its `auto` version-negotiation mode, under the stateless revision 2026-07-28 (multi-round-trip requests,
// SEP-2322).
//
// Usage: node interop/node/ts-sdk-v2-input-required.mjs [SERVER]   over stdio (SERVER default: $TEST_SERVER)
//        node interop/node/ts-sdk-v2-input-required.mjs http       over streamable HTTP
//
// The client declares the `elicitation` (form) and `sampling` capabilities and registers its handlers with
// `setRequestHandler("elicitation/create" | "sampling/createMessage", ...)`, which v2 also runs for the questions an
// `input_required` result carries. It calls three tools of the test server (tests/bin/test-server.rs): `confirm`
// (one elicitation form, accepted with `{"confirm": true}`), `confirm_twice` (two forms in sequence, answered by
// their message: a name, then `true`) and `summarize` (one sampling request, answered with a text message from a
// model of this script's). The server may not send the client requests under 2026-07-28, so each question comes
// back in an `input_required` result; the SDK runs the handler and calls the tool again with the answers
// (`inputResponses`) and the echoed `requestState`, until the result is complete. The final texts must hold the
// answers: for `confirm_twice` both, the first of which only `requestState` carries into the last round (the server
// keeps nothing between rounds).
//
// Over stdio the SDK starts the server (in `auto` mode twice: a short-lived sibling answers the `server/discover`
// probe, then the real one) granted `test.read test.write`, its audit log in a temporary directory and its
// standard error piped here. Over HTTP the server is already running (tests/interop_input_required.rs starts it):
// $TEST_SERVER_URL is its endpoint, $TEST_SERVER_AUDIT_LOG its audit log, $TEST_SERVER_STDERR (optional) the file
// its standard error goes to.
//
// Then the audit log must hold one `tool_call` record per round, per tool in order: `input_required` for each round
// that asked, `ok` for the last; all over the transport used; no message rejected. The name answered is a
// distinctive string that must appear in no audit record, nor on the server's standard error. Exits non-zero with a
// message on the first mismatch.

import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";

import { Mismatch, TIMEOUT_MS, check, packageVersion, step, textOf } from "./common.mjs";

const PROTOCOL = "2026-07-28";
// The name answered to `confirm_twice`: distinctive, so finding it in the audit or on stderr is never a coincidence.
const NAME = "Wombat-TypeScript-2290";
const MODEL = "interop-ts-sdk-v2-model";
const SUMMARY = "Brief.";
const TEXT = "a long text to summarize";

/** The `tool_call` records each tool's calls should leave, one per round, in order. */
const EXPECTED_ROUNDS = {
  confirm: ["input_required", "ok"],
  confirm_twice: ["input_required", "input_required", "ok"],
  summarize: ["input_required", "ok"],
};

/** Where the server is: `{ name, audit, stderr(), transport(), owned }`. */
function target(args) {
  if (args[0] === "http") {
    const missing = ["TEST_SERVER_URL", "TEST_SERVER_AUDIT_LOG"].filter((name) => !process.env[name]);
    if (missing.length > 0) {
      console.log(`FAIL: http mode needs ${missing.join(", ")} in the environment`);
      process.exit(2);
    }
    const stderrFile = process.env.TEST_SERVER_STDERR;
    return {
      name: "http",
      audit: process.env.TEST_SERVER_AUDIT_LOG,
      stderr: () => (stderrFile && existsSync(stderrFile) ? readFileSync(stderrFile, "utf8") : null),
      transport: () => new StreamableHTTPClientTransport(new URL(process.env.TEST_SERVER_URL)),
    };
  }
  if (args.length > 1) {
    console.log("usage: ts-sdk-v2-input-required.mjs [SERVER]\n       ts-sdk-v2-input-required.mjs http");
    process.exit(2);
  }
  const server = args[0] ?? process.env.TEST_SERVER ?? "";
  if (!server || !existsSync(server)) {
    console.log(`FAIL: no server binary: pass it as an argument or set TEST_SERVER (got '${server}')`);
    process.exit(2);
  }
  const owned = mkdtempSync(join(tmpdir(), "interop-ts-sdk-v2-input-required-"));
  const audit = join(owned, "audit.jsonl");
  let said = "";
  return {
    name: "stdio",
    audit,
    owned,
    stderr: () => said,
    transport: () => {
      const transport = new StdioClientTransport({
        command: server,
        args: [],
        env: {
          MCP_SCOPES: "test.read test.write",
          MCP_SERVER_ID: "interop-ts-sdk-v2-input-required",
          MCP_AUDIT_LOG: audit,
        },
        stderr: "pipe",
      });
      transport.stderr.on("data", (chunk) => {
        said += chunk.toString();
      });
      return transport;
    },
  };
}

function records(audit) {
  if (!existsSync(audit)) return [];
  return readFileSync(audit, "utf8")
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

/** The client, its handlers noting the questions they were asked in `asked`. */
function client(asked) {
  const client = new Client(
    { name: "interop-ts-sdk-v2-input-required", version: "1" },
    { versionNegotiation: { mode: "auto" }, capabilities: { elicitation: { form: {} }, sampling: {} } },
  );
  client.setRequestHandler("elicitation/create", async (request) => {
    const { message, requestedSchema } = request.params;
    asked.push(`elicitation: ${message}`);
    const required = JSON.stringify(requestedSchema?.required);
    if (message === "Your name?" && required === '["name"]') return { action: "accept", content: { name: NAME } };
    if (message === "Go ahead?" && required === '["confirm"]') return { action: "accept", content: { confirm: true } };
    throw new Error(`unexpected question: ${JSON.stringify(request.params)}`);
  });
  client.setRequestHandler("sampling/createMessage", async (request) => {
    const prompts = request.params.messages.map((m) => m.content?.text);
    asked.push(`sampling: ${prompts.join(" | ")}`);
    if (JSON.stringify(prompts) !== JSON.stringify([`Summarize: ${TEXT}`]) || request.params.maxTokens !== 10) {
      throw new Error(`unexpected sampling request: ${JSON.stringify(request.params)}`);
    }
    return { model: MODEL, role: "assistant", content: { type: "text", text: SUMMARY } };
  });
  return client;
}

async function calls(where) {
  const asked = [];
  const mcp = client(asked);
  await mcp.connect(where.transport());
  try {
    const version = mcp.getNegotiatedProtocolVersion();
    check(version === PROTOCOL, `negotiated ${version} (era ${mcp.getProtocolEra()}), expected ${PROTOCOL}`);
    step(`negotiated ${version} (era ${mcp.getProtocolEra()})`);

    const confirmed = await mcp.callTool({ name: "confirm", arguments: {} });
    check(!confirmed.isError, `confirm failed: ${JSON.stringify(confirmed)}`);
    check(textOf(confirmed) === 'Accept {"confirm":true}', `confirm answered ${JSON.stringify(textOf(confirmed))}`);
    check(
      JSON.stringify(asked) === '["elicitation: Go ahead?"]',
      `confirm: the client was asked ${JSON.stringify(asked)}`,
    );
    step(`confirm: the elicitation handler answered, result ${JSON.stringify(textOf(confirmed))}`);

    asked.length = 0;
    const twice = await mcp.callTool({ name: "confirm_twice", arguments: {} });
    check(!twice.isError, `confirm_twice failed: ${JSON.stringify(twice)}`);
    const both = `{"name":"${NAME}"} {"confirm":true}`;
    check(
      textOf(twice) === both,
      `confirm_twice answered ${JSON.stringify(textOf(twice))}, expected ${JSON.stringify(both)}`,
    );
    const questions = ["elicitation: Your name?", "elicitation: Go ahead?"];
    check(
      JSON.stringify(asked) === JSON.stringify(questions),
      `confirm_twice: the client was asked ${JSON.stringify(asked)}, expected ${JSON.stringify(questions)}`,
    );
    step(`confirm_twice: both answers in the result, ${JSON.stringify(textOf(twice))}`);

    asked.length = 0;
    const summary = await mcp.callTool({ name: "summarize", arguments: { text: TEXT } });
    check(!summary.isError, `summarize failed: ${JSON.stringify(summary)}`);
    const text = textOf(summary);
    const at = text.indexOf(" said ");
    const content = at < 0 ? null : JSON.parse(text.slice(at + " said ".length));
    check(
      text.slice(0, at) === MODEL &&
        content?.type === "text" &&
        content?.text === SUMMARY &&
        Object.keys(content).length === 2,
      `summarize answered ${JSON.stringify(text)}`,
    );
    check(
      JSON.stringify(asked) === JSON.stringify([`sampling: Summarize: ${TEXT}`]),
      `summarize: the client was asked ${JSON.stringify(asked)}`,
    );
    step(`summarize: the sampling handler answered, result ${JSON.stringify(text)}`);
  } finally {
    await mcp.close();
  }
}

function checkAudit(where) {
  const all = records(where.audit);
  const toolCalls = all.filter((r) => r.event === "tool_call");
  const got = JSON.stringify(toolCalls.map((r) => [r.tool, r.outcome]));
  const expected = JSON.stringify(
    Object.entries(EXPECTED_ROUNDS).flatMap(([tool, outcomes]) => outcomes.map((outcome) => [tool, outcome])),
  );
  check(got === expected, `audit: tool_call records ${got}, expected ${expected}`);
  const transports = [...new Set(toolCalls.map((r) => r.transport))];
  check(
    JSON.stringify(transports) === JSON.stringify([where.name]),
    `audit: tool_call records over ${JSON.stringify(transports)}, expected ${where.name}`,
  );
  const rejected = all.filter((r) => r.event === "message_rejected");
  check(rejected.length === 0, `audit: the server rejected messages from the client: ${JSON.stringify(rejected)}`);
  check(!readFileSync(where.audit, "utf8").includes(NAME), `audit: the name answered (${NAME}) is in a record`);
  for (const [tool, outcomes] of Object.entries(EXPECTED_ROUNDS)) {
    step(`audit: ${tool}: ${outcomes.length} rounds, outcomes ${JSON.stringify(outcomes)}`);
  }
  step(`audit: ${all.length} records, none holding the name answered`);
  const said = where.stderr();
  if (said !== null) {
    check(!said.includes(NAME), `the name answered (${NAME}) is on the server's stderr: ${said}`);
    step("the server's stderr does not hold the name answered");
  }
}

const where = target(process.argv.slice(2));
const label = `ts-sdk-v2 ${packageVersion("@modelcontextprotocol/client")} input_required over ${where.name}`;
console.log(`${label}: node ${process.version}, audit log ${where.audit}`);
let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
});
try {
  await Promise.race([calls(where), timeout]);
  checkAudit(where);
} catch (error) {
  if (!(error instanceof Mismatch)) console.log(error?.stack ?? String(error));
  console.log(`audit log (${where.audit}):`);
  for (const record of records(where.audit)) console.log(`  ${JSON.stringify(record)}`);
  console.log(`FAIL (${label}): ${error?.message ?? error}`);
  process.exit(1);
} finally {
  clearTimeout(timer);
}
if (where.owned) rmSync(where.owned, { recursive: true, force: true });
console.log(`PASS ${label}`);
// Stray handles (a child's pipes) must not keep the process alive.
process.exit(0);
