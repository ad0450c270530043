"""The ``inloop`` command, installed with the Python package (the same CLI as the Rust binary)."""

from __future__ import annotations

import sys

from . import _native


def main() -> None:
    """Entry point of the ``inloop`` console script."""
    sys.stdout.flush()
    sys.exit(_native.cli_main(["inloop", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
