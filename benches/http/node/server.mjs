// The Node peer of the HTTP benchmark (`http-bench`, candidate `node`): the same `read_file` as secure-file-server,
// written the way the TypeScript SDK (v1, `@modelcontextprotocol/sdk`) documents a stateless streamable HTTP server
// behind its bearer middleware:
//
// - Express from the SDK's `createMcpExpressApp()` (Host check for loopback, JSON body parser);
// - `requireBearerAuth` on POST /mcp, with an `OAuthTokenVerifier` that verifies the HS256 JWT with `jose`
//   (signature, `iss`, `aud` = this server's resource URL, `exp`/`nbf`) and requires the scope `files.read`;
// - stateless mode as in the SDK's `simpleStatelessStreamableHttp` example: a new `McpServer` and a new
//   `StreamableHTTPServerTransport` ({ sessionIdGenerator: undefined }) per request, here with
//   `enableJsonResponse: true` so answers are JSON, not SSE.
//
// Settings from the environment: PORT, DATA_ROOT, MCP_AUTH_HS256_SECRET, MCP_AUTH_ISSUER, MCP_RESOURCE_URL.
// Prints `listening on PORT` on standard error once it accepts connections.

import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { jwtVerify } from 'jose';
import * as z from 'zod/v4';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';

function setting(name) {
    const value = process.env[name];
    if (!value) {
        console.error(`server.mjs: set ${name}`);
        process.exit(2);
    }
    return value;
}

const port = Number(setting('PORT'));
const root = path.resolve(setting('DATA_ROOT'));
const secret = new TextEncoder().encode(setting('MCP_AUTH_HS256_SECRET'));
const issuer = setting('MCP_AUTH_ISSUER');
const resource = setting('MCP_RESOURCE_URL');

/** @type {import('@modelcontextprotocol/sdk/server/auth/provider.js').OAuthTokenVerifier} */
const verifier = {
    async verifyAccessToken(token) {
        let payload;
        try {
            ({ payload } = await jwtVerify(token, secret, { algorithms: ['HS256'], issuer, audience: resource }));
        } catch (error) {
            throw new InvalidTokenError(`invalid token: ${error.code ?? error.message}`);
        }
        if (typeof payload.sub !== 'string' || typeof payload.exp !== 'number') {
            throw new InvalidTokenError('invalid token: no sub or exp');
        }
        return {
            token,
            clientId: payload.sub,
            scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
            expiresAt: payload.exp,
            resource: new URL(resource),
        };
    },
};

function newServer() {
    const server = new McpServer({ name: 'node-file-server', version: '1.0.0' });
    server.registerTool(
        'read_file',
        { description: 'Read a UTF-8 text file directly under the data root.', inputSchema: { filename: z.string() } },
        async ({ filename }) => {
            const file = path.resolve(root, filename);
            if (path.dirname(file) !== root || filename.startsWith('.')) {
                throw new Error('path outside the data root');
            }
            return { content: [{ type: 'text', text: await readFile(file, 'utf8') }] };
        },
    );
    return server;
}

const app = createMcpExpressApp({ host: '127.0.0.1' });
const auth = requireBearerAuth({ verifier, requiredScopes: ['files.read'], expectedResource: new URL(resource) });

app.post('/mcp', auth, async (req, res) => {
    const server = newServer();
    try {
        const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
        res.on('close', () => {
            transport.close();
            server.close();
        });
        await server.connect(transport);
        await transport.handleRequest(req, res, req.body);
    } catch (error) {
        console.error('server.mjs: error handling a request:', error);
        if (!res.headersSent) {
            res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
        }
    }
});

const methodNotAllowed = (req, res) => {
    res.status(405).json({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null });
};
app.get('/mcp', methodNotAllowed);
app.delete('/mcp', methodNotAllowed);

app.listen(port, '127.0.0.1', error => {
    if (error) {
        console.error('server.mjs: cannot listen:', error);
        process.exit(1);
    }
    console.error(`listening on ${port}`);
});
