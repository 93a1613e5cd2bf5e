"""A committee member's keys: files on disk, and `seqnet keys generate`.

Each node has two secrets:
- an Ed25519 identity key (PyNaCl): authenticates the node to its peers and signs its
  consensus votes, timeouts and proposals;
- a secp256k1 settlement key (coincurve): signs checkpoints for the settlement contract;
  its Ethereum address is the node's member address on chain.

Key files hold one line, `<kind>:<hex of the 32-byte secret>`, and are created with mode
0600 whatever the umask (never rewritten in place: a new file is linked into place, so an
existing key is never overwritten). Loaders refuse a file that group or others may read.
Paths only; this room knows nothing of genesis or configs.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import coincurve
from nacl.signing import SigningKey

from node.intents import address_of_private_key, format_address
from node.store.storage import fsync_dir

IDENTITY_KIND: Final = "ed25519"
SETTLEMENT_KIND: Final = "secp256k1"
MAX_KEY_FILE_BYTES: Final = 256


class KeyFileError(Exception):
    """A key file is missing, unreadable, exposed, or not what it claims to be."""


@dataclass(frozen=True, slots=True)
class KeyPaths:
    identity: Path  # <name>.ed25519.key
    settlement: Path  # <name>.secp256k1.key
    public: Path  # <name>.pub.json

    @classmethod
    def of(cls, directory: Path, name: str) -> KeyPaths:
        return cls(
            identity=directory / f"{name}.{IDENTITY_KIND}.key",
            settlement=directory / f"{name}.{SETTLEMENT_KIND}.key",
            public=directory / f"{name}.pub.json",
        )


@dataclass(frozen=True, slots=True)
class NodeKeys:
    name: str
    identity: SigningKey
    settlement: coincurve.PrivateKey

    @classmethod
    def generate(cls, name: str) -> NodeKeys:
        return cls(name, SigningKey.generate(), coincurve.PrivateKey())

    @property
    def identity_public(self) -> bytes:
        return bytes(self.identity.verify_key)

    @property
    def settlement_address(self) -> bytes:
        return address_of_private_key(self.settlement)

    def public_summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ed25519_pubkey": self.identity_public.hex(),
            "settlement_address": format_address(self.settlement_address),
        }


# ---------------------------------------------------------------------------------------
# Writing


def write_private_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and `data`, durably; refuse to replace an existing file.

    The content is written to a temporary name and hard-linked into place, so a crash
    never leaves a half-written key under the real name."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only remove bits, but be explicit
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    finally:
        tmp.unlink()
    fsync_dir(path.parent)


def write_public_file(path: Path, text: str) -> None:
    path.write_text(text)


def _key_line(kind: str, secret: bytes) -> bytes:
    return f"{kind}:{secret.hex()}\n".encode()


def write_node_keys(keys: NodeKeys, directory: Path) -> KeyPaths:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = KeyPaths.of(directory, keys.name)
    for path in (paths.identity, paths.settlement, paths.public):
        if path.exists():
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key")
    write_private_file(paths.identity, _key_line(IDENTITY_KIND, bytes(keys.identity)))
    write_private_file(paths.settlement, _key_line(SETTLEMENT_KIND, keys.settlement.secret))
    write_public_file(paths.public, json.dumps(keys.public_summary(), indent=2) + "\n")
    return paths


# ---------------------------------------------------------------------------------------
# Loading


def read_private_file(path: Path, kind: str) -> bytes:
    """The 32-byte secret in a key file of `kind`, after checking its permissions."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise KeyFileError(
            f"key file {path} has mode {mode:04o}: group or others may access it; "
            f"run `chmod 600 {path}`"
        )
    if info.st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path} is too large to be a key")
    text = path.read_text(errors="replace").strip()
    prefix, _, hex_secret = text.partition(":")
    if prefix != kind:
        raise KeyFileError(f"{path} is not a {kind} key file (found {prefix[:16]!r})")
    try:
        secret = bytes.fromhex(hex_secret)
    except ValueError:
        raise KeyFileError(f"key file {path} is corrupt (not hex)") from None
    if len(secret) != 32:
        raise KeyFileError(f"key file {path} is corrupt (secret is not 32 bytes)")
    return secret


def load_identity_key(path: Path) -> SigningKey:
    return SigningKey(read_private_file(path, IDENTITY_KIND))


def load_settlement_key(path: Path) -> coincurve.PrivateKey:
    try:
        return coincurve.PrivateKey(read_private_file(path, SETTLEMENT_KIND))
    except ValueError:
        raise KeyFileError(f"key file {path} holds an invalid secp256k1 secret") from None


def load_node_keys(name: str, identity_path: Path, settlement_path: Path) -> NodeKeys:
    return NodeKeys(name, load_identity_key(identity_path), load_settlement_key(settlement_path))


# ---------------------------------------------------------------------------------------
# CLI: seqnet keys generate


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Generate a node's Ed25519 identity key and secp256k1 settlement key.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the key files")
    parser.add_argument("--name", default="node", help="file name prefix (default: node)")
    args = parser.parse_args(argv)
    if not args.name or "/" in args.name or args.name.startswith("."):
        parser.error("--name must be a plain file name prefix")
    keys = NodeKeys.generate(args.name)
    try:
        paths = write_node_keys(keys, args.out)
    except (KeyFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = keys.public_summary()
    summary["files"] = {
        "identity": str(paths.identity),
        "settlement": str(paths.settlement),
        "public": str(paths.public),
    }
    print(json.dumps(summary, indent=2))
    return 0
