// Drives secure-file-server with the TypeScript SDK v1 (`@modelcontextprotocol/sdk`): `Client` over
// `StdioClientTransport`, the `initialize` handshake.
//
// Usage: node interop/node/ts-sdk-v1.mjs [SERVER]   (default: $SECURE_FILE_SERVER)

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { LATEST_PROTOCOL_VERSION } from "@modelcontextprotocol/sdk/types.js";

import { packageVersion, run, sdkScenario, serverPath } from "./common.mjs";

const server = serverPath(process.argv.slice(2));
const label = `ts-sdk-v1 ${packageVersion("@modelcontextprotocol/sdk")}`;

await run(label, async (fixture) => {
  const versions = await sdkScenario(fixture, async (scopes) => {
    const transport = new StdioClientTransport({ command: server, args: [], env: fixture.env(scopes), stderr: "inherit" });
    const client = new Client({ name: "interop-ts-sdk-v1", version: "1" });
    await client.connect(transport);
    return { client, version: `initialize ${LATEST_PROTOCOL_VERSION}`, close: () => client.close() };
  });
  fixture.checkAudit(versions.map(() => ["initialize", LATEST_PROTOCOL_VERSION]));
});
