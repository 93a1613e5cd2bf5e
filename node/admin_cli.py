"""`seqnet admin list-series …`: list an option series after genesis (docs/OPERATIONS.md,
"Listing an option series"; the format is docs/PROTOCOL.md §7.5).

    seqnet admin list-series sign --genesis genesis.toml --identity-key keys/n0.identity \\
        --terms series.json [--out n0.sig.json]
    seqnet admin list-series submit --terms series.json --api http://127.0.0.1:8000 \\
        n0.sig.json n1.sig.json n2.sig.json

`sign` is run by each member's operator, offline if they like: it signs the terms with the
member's identity key (the one its votes and observations are signed with) and writes the
member's index, the genesis hash and the signature as JSON. `submit` combines the
signatures of at least the oracle quorum (2f + 1) of members and posts the listing to any
member's API (POST /v1/admin/listings); that member forwards it to the others, the next
leader proposes it, and the engine lists the series at that block (or rejects it: a taken
id or symbol, an underlying that is no perp market, an expiry less than the rules' twap_ms
ahead, 1,024 markets).

`series.json` is the series' terms, an option market's genesis table without `kind` and
`quote`: {"id", "symbol", "underlying", "strike", "expiry_ms", "right", "underlying_lots",
"vol_e9", "tick_size", "lot_size", "maker_fee_bps", "taker_fee_bps"}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from consensus.crypto import Ed25519Signer
from node.config import ConfigError as TomlConfigError
from node.genesis import load_genesis
from node.keys import KeyFileError, load_identity_key
from node.listing import BadListing, make_listing, sign_terms, terms_of


class CliError(Exception):
    pass


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"{what} {path}: {exc}") from None


def sign(args: argparse.Namespace) -> dict[str, Any]:
    """The member's signature of the terms, as the JSON `submit` reads."""
    try:
        genesis = load_genesis(args.genesis)
    except (OSError, TomlConfigError, ValueError) as exc:
        raise CliError(f"genesis {args.genesis}: {exc}") from None
    try:
        key = load_identity_key(args.identity_key)
    except (KeyFileError, OSError) as exc:
        raise CliError(str(exc)) from None
    public = bytes(key.verify_key)
    members = [m.ed25519_pubkey for m in genesis.members]
    if public not in members:
        raise CliError(f"{args.identity_key}: not the identity key of a genesis member")
    table = _read_json(args.terms, "terms")
    terms = terms_of(table)
    chain_id = genesis.genesis_hash()
    signature = sign_terms(Ed25519Signer(bytes(key)), chain_id, terms)
    return {
        "member": members.index(public),
        "genesis_hash": "0x" + chain_id.hex(),
        "terms": table,
        "signature": "0x" + signature.hex(),
    }


def submit(args: argparse.Namespace) -> dict[str, Any]:
    """Combine the signature files (same terms, same genesis) and post the listing."""
    table = _read_json(args.terms, "terms")
    terms_of(table)
    pairs: list[tuple[int, bytes]] = []
    hashes = set()
    for path in args.signatures:
        found = _read_json(path, "signature")
        if not isinstance(found, dict) or found.get("terms") != table:
            raise CliError(f"{path}: not a signature of these terms")
        hashes.add(found.get("genesis_hash"))
        try:
            pairs.append((int(found["member"]), bytes.fromhex(str(found["signature"])[2:])))
        except (KeyError, ValueError, TypeError):
            raise CliError(f"{path}: no member index and 0x-hex signature") from None
    if len(hashes) > 1:
        raise CliError("the signatures are of different genesis files")
    listing = make_listing(table, pairs)  # refuses a member given twice
    body = {
        "terms": table,
        "signatures": [{"member": m, "signature": "0x" + s.hex()} for m, s in listing.signatures],
    }
    try:
        reply = httpx.post(args.api.rstrip("/") + "/v1/admin/listings", json=body, timeout=10)
    except httpx.HTTPError as exc:
        raise CliError(f"{args.api}: {exc}") from None
    try:
        answer: dict[str, Any] = reply.json()
    except ValueError:
        raise CliError(f"{args.api}: HTTP {reply.status_code}: {reply.text[:200]}") from None
    if reply.status_code != 200:
        error = answer.get("error", {})
        raise CliError(f"refused ({reply.status_code} {error.get('code')}): {error.get('message')}")
    return answer


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="List an option series after genesis with the members' signatures.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list-series", help="sign or submit a series listing")
    steps = p_list.add_subparsers(dest="step", required=True)
    p_sign = steps.add_parser("sign", help="sign the terms with a member's identity key")
    p_sign.add_argument("--genesis", type=Path, required=True, help="the committee's genesis")
    p_sign.add_argument("--identity-key", type=Path, required=True, help="the member's key file")
    p_sign.add_argument("--terms", type=Path, required=True, help="the series' terms (JSON)")
    p_sign.add_argument("--out", type=Path, help="write the signature here (default: stdout)")
    p_submit = steps.add_parser("submit", help="combine signatures and post to a member")
    p_submit.add_argument("--terms", type=Path, required=True, help="the series' terms (JSON)")
    p_submit.add_argument("--api", required=True, help="a member's API, http://host:port")
    p_submit.add_argument("signatures", type=Path, nargs="+", help="signature files of `sign`")
    args = parser.parse_args(argv)
    try:
        result = sign(args) if args.step == "sign" else submit(args)
    except (CliError, BadListing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    if args.step == "sign" and args.out is not None:
        args.out.write_text(text + "\n")
        print(f"signature of member {result['member']} written to {args.out}")
    else:
        print(text)
    return 0
