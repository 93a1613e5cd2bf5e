"""deploy/Dockerfile builds an image whose matching engine runs compiled (mypyc): the
image's own `seqnet bench matching` reports `"compiled": true`, and the engine module is
an extension module. Needs a usable container engine (docker or podman, with a daemon or
rootless setup that can build); skipped, with the reason, when there is none. The build
installs the pinned dependencies and compiles: minutes, and network access for the base
image and the packages."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
BUILD_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 300


def container_engine() -> tuple[str | None, str]:
    """The first usable engine, or None and why there is none."""
    reasons = []
    for name in ("docker", "podman"):
        path = shutil.which(name)
        if path is None:
            reasons.append(f"no {name} on PATH")
            continue
        try:
            info = subprocess.run(
                [path, "info"], capture_output=True, text=True, timeout=30, check=False
            )
        except subprocess.TimeoutExpired:
            reasons.append(f"`{name} info` did not answer in 30 s")
            continue
        if info.returncode == 0:
            return path, ""
        last = (info.stderr.strip() or info.stdout.strip()).splitlines()[-1:] or ["?"]
        reasons.append(f"`{name} info` failed: {last[0]}")
    return None, "; ".join(reasons)


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[str, str]]:
    engine, why = container_engine()
    if engine is None:
        pytest.skip(f"no usable container engine ({why})")
    tag = f"seqnet-test:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(
        [engine, "build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert build.returncode == 0, (build.stdout + build.stderr)[-5000:]
    try:
        yield engine, tag
    finally:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, check=False)


def run(engine: str, tag: str, *args: str, entrypoint: str | None = None) -> str:
    command = [engine, "run", "--rm"]
    if entrypoint is not None:
        command += ["--entrypoint", entrypoint]
    done = subprocess.run(
        [*command, tag, *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def test_the_image_runs_the_compiled_engine(image: tuple[str, str]) -> None:
    engine, tag = image
    out = run(engine, tag, "bench", "matching", "--json", "--entries", "2000", "--accounts", "50")
    report = json.loads(out.strip().splitlines()[-1])
    assert report["compiled"] is True, report
    module = run(
        engine,
        tag,
        "-c",
        "import matching.engine as e; print(e.__file__)",
        entrypoint="python",
    ).strip()
    assert module.endswith(".so"), module
    # The default command is a member run; its help proves the CLI is wired up.
    assert "--config" in run(engine, tag, "node", "run", "--help")
