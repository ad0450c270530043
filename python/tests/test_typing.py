"""The stubs tell the truth about the native module, and the package type-checks strictly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "inloop"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=300
    )


def test_native_stub_matches_the_module() -> None:
    out = run("mypy.stubtest", "inloop._native")
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_passes_mypy_strict() -> None:
    out = run("mypy", "--strict", str(PACKAGE))
    assert out.returncode == 0, out.stdout + out.stderr


def test_policy_parameters_type_check() -> None:
    """tests/typed_policies.py: accepted uses check, refused ones are errors."""
    out = run("mypy", "--strict", str(Path(__file__).with_name("typed_policies.py")))
    assert out.returncode == 0, out.stdout + out.stderr
