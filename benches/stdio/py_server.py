"""The server users would write instead: the same read_file, with the `mcp` SDK's MCPServer (FastMCP in 1.x).

Confinement as the tutorial does it, with a resolve-and-compare check (the comparison is by path components, not
a string prefix), so the two servers do comparable work per call.
"""

import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer

ROOT = Path(os.environ["DATA_ROOT"]).resolve()

server = MCPServer("python-file-server")


@server.tool()
def read_file(filename: str) -> str:
    """Read a UTF-8 text file directly under the data root."""
    path = (ROOT / filename).resolve()
    if path.parent != ROOT or filename.startswith("."):
        raise ValueError("path outside the data root")
    return path.read_text(encoding="utf-8")


if __name__ == "__main__":
    server.run("stdio")
