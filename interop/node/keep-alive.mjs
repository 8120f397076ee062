// Drives secure-file-server over streamable HTTP with the TypeScript SDK v2 (`@modelcontextprotocol/client`, whose
// transport uses Node's `fetch`) making calls one after another with a pause between them, to show which idle
// keep-alive connections the client reuses. The server closes a connection left idle past its header-read timeout
// and says so on every answer (`Keep-Alive: timeout=N`); Node's `fetch` then stops reusing a connection well before
// that (a call sent on a connection as the server closes it fails with `fetch failed`). The test reads which
// connection each call came on from the audit records' `remote_addr`.
//
// Usage: node interop/node/keep-alive.mjs PAUSE_MS CALLS   to the server named in the environment (see common.mjs)

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

import { GREETING, check, httpServer, run, step, textOf } from "./common.mjs";

const [pause, calls] = process.argv.slice(2).map(Number);
const http = httpServer();

await run(
  `keep-alive, ${calls} calls ${pause} ms apart`,
  async () => {
    const client = new Client({ name: "keep-alive", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(http.url), {
      requestInit: { headers: { Authorization: `Bearer ${http.tokens.read}` } },
    });
    await client.connect(transport);
    for (let i = 0; i < calls; i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, pause));
      const result = await client.callTool({ name: "read_file", arguments: { filename: "greeting.txt" } });
      check(textOf(result) === GREETING, `call ${i}: ${JSON.stringify(result)}`);
    }
    step(`${calls} calls answered, ${pause} ms apart`);
    await client.close();
  },
  http,
);
