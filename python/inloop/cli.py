"""The ``inloop`` command, installed with the Python package (the same CLI as the Rust binary)."""

from __future__ import annotations

import os
import sys

from . import _native


def main() -> None:
    """Entry point of the ``inloop`` console script. ``inloop mcp`` runs the MCP server
    (:mod:`inloop.mcp`, built on the ``mcp`` package); every other command is the Rust CLI."""
    if sys.argv[1:2] == ["mcp"]:
        from .mcp import main as mcp_main

        sys.exit(mcp_main(sys.argv[2:]))
    # `inloop --database-url URL mcp` reaches the Rust CLI, which runs this same Python.
    os.environ.setdefault("INLOOP_PYTHON", sys.executable)
    sys.stdout.flush()
    sys.exit(_native.cli_main(["inloop", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
