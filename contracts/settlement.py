"""Synchronous web3.py bindings for the Settlement contract and the test tokens.

Blocking calls: the node runs them in worker threads (trio.to_thread.run_sync), never on
the event loop. Transactions are signed locally with the sender's private key and sent
raw, so the same code drives eth-tester, anvil and a real node. Every revert surfaces as
`Reverted` carrying the custom error's name and arguments, decoded from the ABIs.

Addresses are 20-byte `bytes` throughout (as in matching/), `ETH` is the zero address,
amounts are in token base units (docs/PROTOCOL.md §1).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import Web3
from web3._utils.events import get_event_data

from contracts.artifacts import load_artifact
from contracts.signing import (
    Checkpoint,
    Signature,
    checkpoint_digest,
    ordered_signatures,
    rotation_digest,
)
from matching.merkle import keccak

ETH = bytes(20)
GAS_MARGIN_NUM, GAS_MARGIN_DEN = 6, 5  # estimate * 1.2: estimates can be tight
RECEIPT_TIMEOUT_S = 120.0
_ARTIFACTS = ("Settlement", "TestToken", "FeeOnTransferToken", "ReentrantToken")


class Reverted(Exception):
    """A call or transaction reverted. `name` is the custom error ("" if none decoded)."""

    def __init__(self, name: str, args: tuple[Any, ...], data: bytes) -> None:
        super().__init__(f"{name or 'revert'}{args if args else ''}")
        self.name = name
        self.error_args = args
        self.data = data


@dataclass(frozen=True, slots=True)
class TokenConfig:
    token: bytes
    unit: int


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: bytes
    log_index: int


@dataclass(frozen=True, slots=True)
class TxResult:
    tx_hash: bytes
    block_number: int
    gas_used: int
    events: list[Event]
    contract_address: bytes | None = None  # of a deployment

    def event(self, name: str) -> Event:
        matches = [e for e in self.events if e.name == name]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} {name} events in {self.tx_hash.hex()}")
        return matches[0]


@dataclass(frozen=True, slots=True)
class Deposit:
    deposit_id: int
    account: bytes
    token: bytes
    amount: int
    block_number: int
    tx_hash: bytes
    log_index: int


@dataclass(frozen=True, slots=True)
class SettlementState:
    sequence: int
    last_deposit_id: int
    deposit_count: int
    last_checkpoint_at: int
    epoch: int
    threshold: int
    frozen: bool
    state_root: bytes
    committee_hash: bytes


# ------------------------------------------------------------------ ABI registry


class _Abis:
    """Errors and events of every artifact, by selector / topic, decoded in one place."""

    def __init__(self) -> None:
        self.errors: dict[bytes, tuple[str, list[str]]] = {
            keccak(b"Error(string)")[:4]: ("Error", ["string"]),
            keccak(b"Panic(uint256)")[:4]: ("Panic", ["uint256"]),
        }
        self.events: dict[bytes, dict[str, Any]] = {}
        for name in _ARTIFACTS:
            for item in load_artifact(name).abi:
                if item["type"] not in ("error", "event"):
                    continue
                types = [_abi_type(i) for i in item["inputs"]]
                signature = f"{item['name']}({','.join(types)})".encode()
                if item["type"] == "error":
                    self.errors[keccak(signature)[:4]] = (item["name"], types)
                else:
                    self.events[keccak(signature)] = item

    def error(self, data: bytes) -> Reverted:
        known = self.errors.get(data[:4])
        if known is None:
            return Reverted("", (), data)
        name, types = known
        return Reverted(name, tuple(_plain(v) for v in abi_decode(types, data[4:])), data)


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][5:]}"
    return str(item["type"])


def _plain(value: Any) -> Any:
    """ABI-decoded values as this module's types: addresses as 20 bytes."""
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return bytes.fromhex(value[2:])
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


_abis: _Abis | None = None


def abis() -> _Abis:
    global _abis
    if _abis is None:
        _abis = _Abis()
    return _abis


def revert_data(exc: BaseException) -> bytes | None:
    """The revert payload inside a web3 / eth-tester exception, if there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        data = getattr(seen, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
        if type(seen).__name__ == "TransactionFailed" and seen.args:
            first = seen.args[0]
            if isinstance(first, Exception) and first.args:
                first = first.args[0]
            if isinstance(first, bytes):
                return first
        seen = seen.__context__ or seen.__cause__
    return None


def _is_revert(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(names & {"ContractLogicError", "ContractCustomError", "TransactionFailed"})


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 8:
        out.append(seen)
        seen = seen.__context__ or seen.__cause__
    return out


def decode_events(w3: Web3, logs: Sequence[Any]) -> list[Event]:
    """Decode the logs any seqnet contract emitted; unknown logs are skipped."""
    events = []
    for log in logs:
        if not log["topics"]:
            continue
        abi = abis().events.get(bytes(log["topics"][0]))
        if abi is None:
            continue
        data = get_event_data(w3.codec, abi, log)
        events.append(
            Event(
                name=data["event"],
                args={k: _plain(v) for k, v in data["args"].items()},
                block_number=data["blockNumber"],
                tx_hash=bytes(data["transactionHash"]),
                log_index=data["logIndex"],
            )
        )
    return events


# ------------------------------------------------------------------ transactions

_nonce_locks: dict[bytes, threading.Lock] = {}
_nonce_locks_guard = threading.Lock()


def _lock_for(address: bytes) -> threading.Lock:
    with _nonce_locks_guard:
        return _nonce_locks.setdefault(address, threading.Lock())


def _checksum(address: bytes) -> ChecksumAddress:
    return Web3.to_checksum_address(address)


def transact(
    w3: Web3, key: bytes, to: bytes | None, data: bytes, value: int = 0, gas: int | None = None
) -> TxResult:
    """Sign and send one transaction from `key`, wait for it, raise `Reverted` if it fails.

    Transactions of one sender are serialised (nonce order), so worker threads may share it.
    """
    account = Account.from_key(key)
    sender = bytes.fromhex(account.address[2:])
    tx: dict[str, Any] = {"from": account.address, "value": value, "data": data}
    if to is not None:
        tx["to"] = _checksum(to)
    with _lock_for(sender):
        try:
            estimate = w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
        except Exception as e:
            if not _is_revert(e):
                raise
            raise abis().error(revert_data(e) or b"") from e
        block = w3.eth.get_block("latest")
        priority = 10**9
        tx.update(
            nonce=w3.eth.get_transaction_count(account.address, "pending"),
            chainId=w3.eth.chain_id,
            gas=gas or estimate * GAS_MARGIN_NUM // GAS_MARGIN_DEN,
            maxPriorityFeePerGas=priority,
            maxFeePerGas=2 * block.get("baseFeePerGas", 0) + priority,
        )
        del tx["from"]
        signed = account.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
    if receipt["status"] != 1:
        # State moved between estimate and inclusion: replay at that block for the reason.
        replay = {"from": account.address, "value": value, "data": data}
        if to is not None:
            replay["to"] = _checksum(to)
        try:
            w3.eth.call(replay, receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except Exception as e:
            raise abis().error(revert_data(e) or b"") from e
        raise Reverted("", (), b"")
    return TxResult(
        tx_hash=bytes(tx_hash),
        block_number=receipt["blockNumber"],
        gas_used=receipt["gasUsed"],
        events=decode_events(w3, receipt["logs"]),
        contract_address=_address_or_none(receipt.get("contractAddress")),
    )


def _address_or_none(value: str | None) -> bytes | None:
    return bytes.fromhex(value[2:]) if value else None


def deploy(w3: Web3, key: bytes, artifact: str, *args: Any) -> bytes:
    """Deploy a contract from contracts/build; return its address."""
    art = load_artifact(artifact)
    inputs: list[dict[str, Any]] = next(
        (i["inputs"] for i in art.abi if i["type"] == "constructor"), []
    )
    data = art.bytecode + abi_encode([_abi_type(i) for i in inputs], args)
    address = transact(w3, key, None, data).contract_address
    assert address is not None
    return address


class _Bound:
    def __init__(self, w3: Web3, address: bytes, artifact: str) -> None:
        self.w3 = w3
        self.address = address
        self.contract = w3.eth.contract(address=_checksum(address), abi=load_artifact(artifact).abi)

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self.contract.functions, fn)(*args).call()
        except Exception as e:
            if not _is_revert(e):
                raise
            raise abis().error(revert_data(e) or b"") from e

    def _send(self, key: bytes, fn: str, *args: Any, value: int = 0) -> TxResult:
        data = self.contract.encode_abi(fn, args=list(args))
        return transact(self.w3, key, self.address, bytes.fromhex(data[2:]), value=value)


class Erc20(_Bound):
    """An ERC-20 (mint exists only on the test tokens)."""

    def __init__(self, w3: Web3, address: bytes, artifact: str = "TestToken") -> None:
        super().__init__(w3, address, artifact)

    def balance_of(self, account: bytes) -> int:
        balance: int = self._call("balanceOf", _checksum(account))
        return balance

    def approve(self, key: bytes, spender: bytes, amount: int) -> TxResult:
        return self._send(key, "approve", _checksum(spender), amount)

    def transfer(self, key: bytes, to: bytes, amount: int) -> TxResult:
        return self._send(key, "transfer", _checksum(to), amount)

    def mint(self, key: bytes, to: bytes, amount: int) -> TxResult:
        return self._send(key, "mint", _checksum(to), amount)


def balance_of(w3: Web3, token: bytes, account: bytes) -> int:
    """ETH (token == ETH) or ERC-20 balance."""
    if token == ETH:
        balance: int = w3.eth.get_balance(_checksum(account))
        return balance
    return Erc20(w3, token).balance_of(account)


class Settlement(_Bound):
    def __init__(self, w3: Web3, address: bytes) -> None:
        super().__init__(w3, address, "Settlement")
        self._chain_id: int | None = None

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        key: bytes,
        members: Sequence[bytes],
        threshold: int,
        tokens: Sequence[TokenConfig],
        escape_delay_s: int,
    ) -> Settlement:
        address = deploy(
            w3,
            key,
            "Settlement",
            [_checksum(m) for m in members],
            threshold,
            [(_checksum(t.token), t.unit) for t in tokens],
            escape_delay_s,
        )
        return cls(w3, address)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # -- digests (what members sign)

    def checkpoint_digest(self, checkpoint: Checkpoint) -> bytes:
        return checkpoint_digest(self.chain_id, self.address, checkpoint)

    def rotation_digest(self, epoch: int, members: Sequence[bytes], threshold: int) -> bytes:
        return rotation_digest(self.chain_id, self.address, epoch, members, threshold)

    # -- transactions

    def deposit_eth(self, key: bytes, amount: int) -> TxResult:
        return self._send(key, "depositEth", value=amount)

    def deposit_token(
        self, key: bytes, token: bytes, amount: int, approve: bool = True
    ) -> TxResult:
        if approve:
            Erc20(self.w3, token).approve(key, self.address, amount)
        return self._send(key, "depositToken", _checksum(token), amount)

    def submit_checkpoint(
        self,
        key: bytes,
        checkpoint: Checkpoint,
        members: Sequence[bytes],
        signatures: Mapping[bytes, Signature] | Sequence[Signature],
    ) -> TxResult:
        """`members`: the epoch's sorted committee; `signatures`: by signer address (sorted
        here), or a list already in the order to submit (tests use that to misbehave)."""
        return self._send(
            key,
            "submitCheckpoint",
            checkpoint.epoch,
            checkpoint.sequence,
            checkpoint.state_root,
            checkpoint.withdrawals_root,
            checkpoint.last_deposit_id,
            [_checksum(m) for m in members],
            _sig_tuples(signatures),
        )

    def rotate_committee(
        self,
        key: bytes,
        new_members: Sequence[bytes],
        new_threshold: int,
        members: Sequence[bytes],
        signatures: Mapping[bytes, Signature] | Sequence[Signature],
    ) -> TxResult:
        return self._send(
            key,
            "rotateCommittee",
            [_checksum(m) for m in new_members],
            new_threshold,
            [_checksum(m) for m in members],
            _sig_tuples(signatures),
        )

    def claim_withdrawal(
        self,
        key: bytes,
        sequence: int,
        withdrawal_id: int,
        account: bytes,
        token: bytes,
        amount: int,
        proof: Sequence[bytes],
    ) -> TxResult:
        return self._send(
            key,
            "claimWithdrawal",
            sequence,
            withdrawal_id,
            _checksum(account),
            _checksum(token),
            amount,
            list(proof),
        )

    def freeze(self, key: bytes) -> TxResult:
        return self._send(key, "freeze")

    def exit(
        self, key: bytes, account: bytes, token: bytes, balance: int, proof: Sequence[bytes]
    ) -> TxResult:
        return self._send(key, "exit", _checksum(account), _checksum(token), balance, list(proof))

    def reclaim_deposit(self, key: bytes, deposit_id: int) -> TxResult:
        return self._send(key, "reclaimDeposit", deposit_id)

    # -- reads

    def state(self) -> SettlementState:
        h = self._call("header")
        return SettlementState(
            sequence=h[0],
            last_deposit_id=h[1],
            deposit_count=h[2],
            last_checkpoint_at=h[3],
            epoch=h[4],
            threshold=h[5],
            frozen=h[6],
            state_root=bytes(self._call("stateRoot")),
            committee_hash=bytes(self._call("committeeHash")),
        )

    def escape_delay_s(self) -> int:
        delay: int = self._call("escapeDelay")
        return delay

    def withdrawals_root(self, sequence: int) -> bytes:
        return bytes(self._call("withdrawalsRoots", sequence))

    def is_claimed(self, withdrawal_id: int) -> bool:
        return bool(self._call("isClaimed", withdrawal_id))

    def has_exited(self, account: bytes, token: bytes) -> bool:
        return bool(self._call("exited", _checksum(account), _checksum(token)))

    def deposit_record(self, deposit_id: int) -> tuple[bytes, bytes, int] | None:
        """(account, token, amount) of a deposit not yet reclaimed; None otherwise."""
        account, token, amount = self._call("depositRecord", deposit_id)
        if amount == 0:
            return None
        return _plain(account), _plain(token), amount

    def tokens(self) -> list[bytes]:
        return [_plain(t) for t in self._call("tokens")]

    def token_unit(self, token: bytes) -> int:
        unit: int = self._call("tokenUnit", _checksum(token))
        return unit

    # -- events

    def events(self, from_block: int, to_block: int | str = "latest") -> list[Event]:
        logs = self.w3.eth.get_logs(
            {"address": _checksum(self.address), "fromBlock": from_block, "toBlock": to_block}  # type: ignore[typeddict-item]
        )
        return decode_events(self.w3, logs)

    def deposits(self, from_block: int, to_block: int | str = "latest") -> list[Deposit]:
        """Deposit events in [from_block, to_block], in chain order."""
        return [
            Deposit(
                deposit_id=e.args["depositId"],
                account=e.args["account"],
                token=e.args["token"],
                amount=e.args["amount"],
                block_number=e.block_number,
                tx_hash=e.tx_hash,
                log_index=e.log_index,
            )
            for e in self.events(from_block, to_block)
            if e.name == "Deposit"
        ]


def _sig_tuples(
    signatures: Mapping[bytes, Signature] | Sequence[Signature],
) -> list[tuple[bytes, bytes]]:
    ordered = (
        ordered_signatures(signatures) if isinstance(signatures, Mapping) else list(signatures)
    )
    return [(s.r, s.vs) for s in ordered]
