"""An MCP server on stdio for the tool loop's hostile cases: a tool that never answers, one
that returns 10 MB, and one that kills its own server in the middle of a call."""

import asyncio
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("modeld-test-fixture")


@server.tool()
async def hang(seconds: int = 3600) -> str:
    """Waits, then answers."""
    await asyncio.sleep(seconds)
    return "woke up"


@server.tool(structured_output=False)
def huge() -> str:
    """Returns ten megabytes of text (once: structured output would double the message past
    the 16 MiB line limit of rmcp's stdio transport)."""
    return "x" * (10 * 1024 * 1024)


@server.tool()
def die() -> str:
    """Ends the server's process in the middle of the call."""
    os._exit(3)


@server.tool()
def pid() -> str:
    """The server's process id, to tell a restarted server from the first."""
    return str(os.getpid())


if __name__ == "__main__":
    server.run("stdio")
