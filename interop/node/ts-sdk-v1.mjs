// Drives secure-file-server with the TypeScript SDK v1 (`@modelcontextprotocol/sdk`): `Client` with the
// `initialize` handshake, over `StdioClientTransport`, or over `StreamableHTTPClientTransport` with a bearer token.
//
// Usage: node interop/node/ts-sdk-v1.mjs [SERVER]   over stdio (SERVER default: $SECURE_FILE_SERVER)
//        node interop/node/ts-sdk-v1.mjs http       over streamable HTTP, to the server named in the environment
//                                                   (see common.mjs)
//
// Over HTTP the token goes in `requestInit.headers` (no OAuth provider), and the refused write is a 403, which the
// SDK throws as a `StreamableHTTPError` with `code` 403 whose message embeds the answer's body: the JSON-RPC error
// `-32003` `missing_scope:files.write`, read back from the message. The challenge header is not looked at.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { LATEST_PROTOCOL_VERSION } from "@modelcontextprotocol/sdk/types.js";

import { GRANT_SCOPES, check, httpServer, packageVersion, run, sdkScenario, serverPath, thrown } from "./common.mjs";

/** The SDK's message for a failed POST: this prefix, then the answer's body. */
const POST_ERROR = "Streamable HTTP error: Error POSTing to endpoint: ";

/** Over HTTP: a `StreamableHTTPError` with the 403 status, the JSON-RPC error in its message. */
async function refusedOverHttp(call) {
  const error = await thrown(call);
  check(error instanceof StreamableHTTPError, `the refusal threw ${error?.stack ?? error}, not a StreamableHTTPError`);
  check(error.code === 403, `the refusal's StreamableHTTPError has code ${error.code}, expected 403: ${error.message}`);
  check(error.message.startsWith(POST_ERROR), `the refusal's message does not hold the body: ${error.message}`);
  let body;
  try {
    body = JSON.parse(error.message.slice(POST_ERROR.length));
  } catch {
    check(false, `the body in the refusal's message is not JSON: ${error.message}`);
  }
  check(
    body.error?.code === -32003 && body.error?.message === "missing_scope:files.write",
    `the refusal's body is not the JSON-RPC error -32003 missing_scope:files.write: ${JSON.stringify(body)}`,
  );
  const { code, message } = body.error;
  return `StreamableHTTPError(code ${error.code}), body error ${JSON.stringify({ code, message })}`;
}

const http = process.argv[2] === "http" ? httpServer() : undefined;
const server = http ? undefined : serverPath(process.argv.slice(2));
const label = `ts-sdk-v1 ${packageVersion("@modelcontextprotocol/sdk")} over ${http ? "http" : "stdio"}`;

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
        const client = new Client({ name: "interop-ts-sdk-v1", version: "1" });
        await client.connect(transport(grant));
        return { client, version: `initialize ${LATEST_PROTOCOL_VERSION}`, close: () => client.close() };
      },
      http ? { refused: refusedOverHttp, readAfterRefusal: true } : {},
    );
    // Every `initialize` is audited as a session's start, over HTTP too.
    fixture.checkAudit(versions.map(() => ["initialize", LATEST_PROTOCOL_VERSION]));
  },
  http,
);
