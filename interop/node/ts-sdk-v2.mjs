// Drives secure-file-server with the TypeScript SDK v2 (`@modelcontextprotocol/client`): `Client` over its
// `StdioClientTransport`, in one of its two version-negotiation modes.
//
// Usage: node interop/node/ts-sdk-v2.mjs MODE [SERVER]   (SERVER default: $SECURE_FILE_SERVER)
//
// MODE `legacy`: the plain `initialize` handshake (the SDK's default). MODE `auto`: `server/discover` first (on
// stdio the SDK probes on a short-lived sibling process, then starts the real one), falling back to
// `initialize`; our server answers the probe, so the stateless 2026-07-28 revision is used.

import { Client } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";

import { check, packageVersion, run, sdkScenario, serverPath } from "./common.mjs";

const MODES = {
  // mode: [expected audit session lifecycle, expected protocol version]
  legacy: ["initialize", "2025-11-25"],
  auto: ["stateless", "2026-07-28"],
};

const mode = process.argv[2];
if (!(mode in MODES)) {
  console.log(`usage: ts-sdk-v2.mjs {${Object.keys(MODES).join("|")}} [SERVER]`);
  process.exit(2);
}
const server = serverPath(process.argv.slice(3));
const label = `ts-sdk-v2 ${packageVersion("@modelcontextprotocol/client")} ${mode}`;
const [lifecycle, expected] = MODES[mode];

await run(label, async (fixture) => {
  const versions = await sdkScenario(fixture, async (scopes) => {
    const transport = new StdioClientTransport({ command: server, args: [], env: fixture.env(scopes), stderr: "inherit" });
    const client = new Client({ name: "interop-ts-sdk-v2", version: "1" }, { versionNegotiation: { mode } });
    await client.connect(transport);
    const version = client.getNegotiatedProtocolVersion();
    check(version === expected, `negotiated ${version} (era ${client.getProtocolEra()}), expected ${expected}`);
    return { client, version: `${client.getProtocolEra()} ${version}`, close: () => client.close() };
  });
  fixture.checkAudit(versions.map(() => [lifecycle, expected]));
});
