"""The exchange state machine (docs/MATCHING.md).

`./dev setup` may compile the hot modules with mypyc: extension modules beside their
sources, which Python imports first. Compiled modules built from other sources than those
now on disk are refused here, at import, so an edit never runs stale compiled code (a
node whose engine differed from its peers' would diverge from them). This reads the
package's own files once at import; the engine itself does no I/O.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_HERE = Path(__file__).parent
_STAMP = _HERE / "native.sha256"  # written by ./dev setup: sources_digest() of the build


def sources_digest() -> str:
    """sha256 over the package's sources (every module but this one), in name order."""
    digest = hashlib.sha256()
    for path in sorted(_HERE.glob("*.py")):
        if path.name != "__init__.py":
            digest.update(path.read_bytes())
    return digest.hexdigest()


def compiled() -> bool:
    """Does the engine run compiled (mypyc) or interpreted?"""
    from matching import engine

    return not engine.__file__.endswith(".py")


def _refuse_stale_build() -> None:
    if not any(_HERE.glob("*.so")):
        return
    built = _STAMP.read_text().strip() if _STAMP.exists() else None
    if built != sources_digest():
        raise ImportError(
            "matching/: the compiled modules (*.so) were built from other sources than "
            "those on disk; run ./dev setup to rebuild them, or delete matching/*.so to "
            "run interpreted"
        )


_refuse_stale_build()
