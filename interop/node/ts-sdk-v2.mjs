// Drives secure-file-server with the TypeScript SDK v2 (`@modelcontextprotocol/client`): `Client` over its
// `StdioClientTransport`, or over its `StreamableHTTPClientTransport` with a bearer token, in one of its two
// version-negotiation modes.
//
// Usage: node interop/node/ts-sdk-v2.mjs MODE [SERVER]   over stdio (SERVER default: $SECURE_FILE_SERVER)
//        node interop/node/ts-sdk-v2.mjs http MODE       over streamable HTTP, to the server named in the
//                                                        environment (see common.mjs)
//
// MODE `legacy`: the plain `initialize` handshake (the SDK's default). MODE `auto`: `server/discover` first (on
// stdio the SDK probes on a short-lived sibling process, then starts the real one), falling back to
// `initialize`; our server answers the probe, so the stateless 2026-07-28 revision is used.
//
// Over HTTP the token goes in `requestInit.headers` (no OAuth provider, so no step-up), and the refused write is a
// 403 `insufficient_scope` challenge, which the SDK throws as an `InsufficientScopeError` carrying the challenge:
// `requiredScope` "files.write" and `errorDescription` "missing_scope:files.write". The answer's body is not
// carried.

import { Client, InsufficientScopeError, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";

import { GRANT_SCOPES, check, httpServer, packageVersion, run, sdkScenario, serverPath, thrown } from "./common.mjs";

const MODES = {
  // mode: [expected audit session lifecycle, expected protocol version]
  legacy: ["initialize", "2025-11-25"],
  auto: ["stateless", "2026-07-28"],
};

/** Over HTTP: an `InsufficientScopeError` whose `errorDescription` is the refusal's code. */
async function refusedOverHttp(call) {
  const error = await thrown(call);
  check(error instanceof InsufficientScopeError, `the refusal threw ${error?.stack ?? error}, not an InsufficientScopeError`);
  check(
    error.errorDescription === "missing_scope:files.write",
    `the refusal's errorDescription is ${JSON.stringify(error.errorDescription)}, expected "missing_scope:files.write"`,
  );
  check(error.requiredScope === "files.write", `the refusal's requiredScope is ${JSON.stringify(error.requiredScope)}`);
  const { requiredScope, errorDescription } = error;
  return `InsufficientScopeError ${JSON.stringify({ requiredScope, errorDescription })}`;
}

const args = process.argv.slice(2);
const http = args[0] === "http" ? httpServer() : undefined;
const mode = http ? args[1] : args[0];
if (!(mode in MODES)) {
  const modes = Object.keys(MODES).join("|");
  console.log(`usage: ts-sdk-v2.mjs {${modes}} [SERVER]\n       ts-sdk-v2.mjs http {${modes}}`);
  process.exit(2);
}
const server = http ? undefined : serverPath(args.slice(1));
const label = `ts-sdk-v2 ${packageVersion("@modelcontextprotocol/client")} ${mode} over ${http ? "http" : "stdio"}`;
const [lifecycle, expected] = MODES[mode];

await run(
  label,
  async (fixture) => {
    const transport = (grant) =>
      http
        ? new StreamableHTTPClientTransport(new URL(http.url), {
            requestInit: { headers: { Authorization: `Bearer ${http.tokens[grant]}` } },
          })
        : new StdioClientTransport({ command: server, args: [], env: fixture.env(GRANT_SCOPES[grant]), stderr: "inherit" });
    const versions = await sdkScenario(
      fixture,
      async (grant) => {
        const client = new Client({ name: "interop-ts-sdk-v2", version: "1" }, { versionNegotiation: { mode } });
        await client.connect(transport(grant));
        const version = client.getNegotiatedProtocolVersion();
        check(version === expected, `negotiated ${version} (era ${client.getProtocolEra()}), expected ${expected}`);
        return { client, version: `${client.getProtocolEra()} ${version}`, close: () => client.close() };
      },
      http ? { refused: refusedOverHttp, readAfterRefusal: true } : {},
    );
    // Every `initialize` is audited as a session's start, over HTTP too; over stateless HTTP a request that
    // negotiates inline starts no session (each request stands alone).
    fixture.checkAudit(http && lifecycle === "stateless" ? [] : versions.map(() => [lifecycle, expected]));
  },
  http,
);
