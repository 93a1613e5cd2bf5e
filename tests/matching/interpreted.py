"""Run a digest function under the interpreted build, for the compiled-vs-interpreted tests.

The compiled build (mypyc, `./dev native`) and the plain sources must give bit-identical
results. `interpreted_output` copies matching/'s sources (without their compiled modules)
into a temporary folder first on the path of a new Python process, checks that the
process really imports them as sources, runs `statement` there and returns what it
printed, split on white space. It skips the test where matching/ is not compiled here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import matching

ROOT = Path(__file__).resolve().parents[2]


def interpreted_output(tmp_path: Path, statement: str) -> list[str]:
    if not matching.compiled():
        pytest.skip("matching/ runs interpreted here (no compiled build)")
    copy = tmp_path / "matching"
    copy.mkdir()
    for source in Path(matching.__file__).parent.glob("*.py"):
        shutil.copy(source, copy)
    script = (
        f"import sys; sys.path.append({str(ROOT)!r}); import matching; "
        "assert not matching.compiled(); "
        "from matching import engine; assert engine.__file__.endswith('.py'); "
        f"{statement}"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return run.stdout.split()
