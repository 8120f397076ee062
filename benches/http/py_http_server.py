"""The Python peer of the HTTP benchmark (`http-bench`, candidate `python`): the same read_file as secure-file-server,
on the `mcp` SDK's MCPServer (FastMCP in 1.x) over streamable HTTP, run as the SDK runs it (`server.run(
"streamable-http")`: uvicorn, one process), stateless with JSON answers, behind the SDK's bearer authentication:
a `TokenVerifier` that verifies the HS256 JWT with PyJWT (signature, `iss`, `aud` = this server's resource URL,
`exp`/`nbf`, `sub` required) and `AuthSettings(required_scopes=["files.read"])`.

Confinement as in benches/stdio/py_server.py (resolve, then compare the parent by path components).

Settings from the environment: PORT, DATA_ROOT, MCP_AUTH_HS256_SECRET, MCP_AUTH_ISSUER, MCP_RESOURCE_URL.
Logging at WARNING: uvicorn's access log (a line per request at INFO) is off, as it would be under load.
"""

import os
from pathlib import Path

import jwt
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

ROOT = Path(os.environ["DATA_ROOT"]).resolve()
SECRET = os.environ["MCP_AUTH_HS256_SECRET"]
ISSUER = os.environ["MCP_AUTH_ISSUER"]
RESOURCE = os.environ["MCP_RESOURCE_URL"]
PORT = int(os.environ["PORT"])


class JwtVerifier:
    """The SDK's `TokenVerifier` protocol: an `AccessToken` for a valid token, `None` for any other."""

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = jwt.decode(
                token,
                SECRET,
                algorithms=["HS256"],
                issuer=ISSUER,
                audience=RESOURCE,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError:
            return None
        return AccessToken(
            token=token,
            client_id=claims["sub"],
            scopes=str(claims.get("scope", "")).split(),
            expires_at=claims["exp"],
            resource=RESOURCE,
            subject=claims["sub"],
        )


server = MCPServer(
    "python-file-server",
    token_verifier=JwtVerifier(),
    auth=AuthSettings(
        issuer_url=ISSUER,
        resource_server_url=RESOURCE,
        required_scopes=["files.read"],
        # The verifier checks the audience itself (PyJWT's `audience=`).
        validate_token_resource=False,
    ),
    log_level="WARNING",
)


@server.tool()
def read_file(filename: str) -> str:
    """Read a UTF-8 text file directly under the data root."""
    path = (ROOT / filename).resolve()
    if path.parent != ROOT or filename.startswith("."):
        raise ValueError("path outside the data root")
    return path.read_text(encoding="utf-8")


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=PORT, stateless_http=True, json_response=True)
