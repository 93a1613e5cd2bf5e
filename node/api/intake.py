"""Client intake shared by HTTP and WebSocket: decode, rate-limit, submit, answer.

Everything a client sends crosses this room before it reaches the node. Input is
decoded with the protocol's own parsers (node/intents.py), then charged to the client's
IP and account buckets (node/api/ratelimit.py), then handed to the `NodeFacade`. A client's
mistake becomes an `ApiError` (a whole request refused, with an HTTP status and a code)
or a per-intent `rejected` result; nothing a client sends may raise anything else.

JSON is parsed by `parse_json_bounded` (PROTOCOL.md §4.5: duplicate keys, floats and
deep nesting refused): orjson, checked against a member count taken from the
string-free skeleton the depth check already builds, with the stdlib scanner and its
refusing hooks behind it for every document the check does not pass (6.4 µs per intent
of a 500-intent batch, against 19.4 µs with the stdlib scanner alone). orjson writes
the answers.

This room holds no sockets; it reads the clock only through `trio.current_time`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgpack
import orjson
import structlog
import trio

from node.api.facade import ApiLimits, NodeFacade, SubmitResult
from node.api.ratelimit import NO_WAIT, TokenBuckets
from node.intents import (
    MAX_INTENT_JSON_BYTES,
    MAX_INTENT_MSGPACK_BYTES,
    U64_MAX,
    IntentError,
    MalformedIntent,
    SignedIntent,
    intent_from_json,
    intent_from_wire,
    oversized_json_items,
    oversized_msgpack_items,
    parse_json_bounded,
    unpack_intent,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

log = structlog.get_logger("seqnet.api")

CANCEL_ACTIONS: Final = frozenset({"cancel", "cancel_cloid", "cancel_all"})
MAX_REQUEST_ID_CHARS: Final = 64

Item = SignedIntent | IntentError  # a decoded intent, or why it could not be decoded


class ApiError(Exception):
    """A request refused as a whole. `request_id` is the WebSocket message id, if known."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        retry_after_s: float | None = None,
        request_id: int | str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s
        self.request_id = request_id

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.retry_after_s is not None:
            error["retry_after_ms"] = _ms(self.retry_after_s)
        return {"error": error}


def _ms(seconds: float) -> int:
    return 60_000 if math.isinf(seconds) else max(1, math.ceil(seconds * 1000))


def from_intent_error(error: IntentError, request_id: int | str | None = None) -> ApiError:
    status = 413 if error.code == "too_large" else 400
    return ApiError(status, error.code, error.message, field=error.field, request_id=request_id)


# ---------------------------------------------------------------------------------------
# Encoding answers


def _hex(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_json(obj: Any) -> bytes:
    """JSON bytes; bytes values (intent ids, addresses) become 0x-hex."""
    return orjson.dumps(obj, default=_hex)


def dumps_msgpack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def _result(
    intent_id: bytes | None,
    status: str,
    *,
    code: str | None = None,
    message: str | None = None,
    field: str | None = None,
    height: int | None = None,
    retry_after_s: float | None = None,
) -> dict[str, Any]:
    """One per-intent answer; absent fields are left out."""
    result: dict[str, Any] = {"id": intent_id, "status": status}
    if code is not None:
        result["code"] = code
    if message is not None:
        result["message"] = message
    if field is not None:
        result["field"] = field
    if height is not None:
        result["height"] = height
    if retry_after_s is not None:
        result["retry_after_ms"] = _ms(retry_after_s)
    return result


# ---------------------------------------------------------------------------------------
# Decoding requests


def _decode_items(
    raw_items: Any,
    parse: Callable[[Any], SignedIntent],
    limits: ApiLimits,
    oversized: Callable[[list[Any]], list[int]],
    intent_limit: int,
) -> list[Item]:
    """Each element decoded, or why not. An element over the per-intent size limit
    (PROTOCOL.md §4.5; `oversized` measures it in the request) is refused `too_large`
    without being looked at, let alone its signature recovered."""
    if not isinstance(raw_items, list):
        raise ApiError(400, "bad_type", "intents must be an array", field="intents")
    if not raw_items:
        raise ApiError(400, "bad_value", "intents must not be empty", field="intents")
    if len(raw_items) > limits.max_batch_intents:
        raise ApiError(
            413,
            "too_large",
            f"{len(raw_items)} intents in one request; at most {limits.max_batch_intents}",
            field="intents",
        )
    too_large = set(oversized(raw_items))
    items: list[Item] = []
    for index, raw in enumerate(raw_items):
        if index in too_large:
            items.append(_too_large(intent_limit))
            continue
        try:
            items.append(parse(raw))
        except IntentError as error:
            items.append(error)
    return items


def _too_large(limit: int) -> MalformedIntent:
    return MalformedIntent("too_large", f"intent larger than {limit} bytes")


def decode_http_body(raw: bytes, limits: ApiLimits) -> list[Item]:
    """POST /v1/intents body: one intent object, or {"intents": [...]}.

    A body that is not JSON, or a single intent that is malformed or over the per-intent
    size limit, is refused whole; in a batch, each malformed or oversized intent becomes
    its own `rejected` answer."""
    try:
        obj = parse_json_bounded(raw, limits.max_body_bytes)
    except IntentError as error:
        raise from_intent_error(error) from None
    if isinstance(obj, dict) and "intents" in obj:
        extra = [key for key in obj if key != "intents"]
        if extra:
            raise ApiError(400, "unknown_field", f"unknown field {extra[0]!r}", field=extra[0])
        return _decode_items(
            obj["intents"],
            intent_from_json,
            limits,
            lambda items: oversized_json_items(raw, items),
            MAX_INTENT_JSON_BYTES,
        )
    if len(raw.strip()) > MAX_INTENT_JSON_BYTES:
        raise from_intent_error(_too_large(MAX_INTENT_JSON_BYTES))
    try:
        return [intent_from_json(obj)]
    except IntentError as error:
        raise from_intent_error(error) from None


@dataclass(frozen=True, slots=True)
class Message:
    """One WebSocket intake message: {"id", "intents", "wait"?, "timeout_ms"?}."""

    request_id: int | str
    items: list[Item]
    wait: bool
    timeout_s: float


_MESSAGE_KEYS: Final = frozenset({"id", "intents", "wait", "timeout_ms"})


def decode_ws_text(text: str, limits: ApiLimits) -> Message:
    try:
        obj = parse_json_bounded(text, limits.max_body_bytes)
    except IntentError as error:
        raise from_intent_error(error) from None
    return _decode_message(
        obj,
        intent_from_json,
        limits,
        lambda items: oversized_json_items(text, items),
        MAX_INTENT_JSON_BYTES,
    )


def decode_ws_binary(data: bytes, limits: ApiLimits) -> Message:
    """msgpack map; each intent is either the packed bytes of one intent
    (`pack_intent`, PROTOCOL.md §4.5) or the intent map itself."""
    if len(data) > limits.max_body_bytes:
        raise ApiError(413, "too_large", f"message larger than {limits.max_body_bytes} bytes")
    bound = len(data)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=bound,
            max_bin_len=bound,
            max_array_len=bound,
            max_map_len=bound,
            max_ext_len=0,
        )
    except Exception as error:  # msgpack raises a zoo of types on garbage
        raise ApiError(400, "bad_encoding", f"not valid msgpack: {error}") from None
    return _decode_message(
        obj,
        _intent_from_msgpack,
        limits,
        lambda items: oversized_msgpack_items(data, items),
        MAX_INTENT_MSGPACK_BYTES,
    )


def _intent_from_msgpack(obj: Any) -> SignedIntent:
    return unpack_intent(obj) if isinstance(obj, bytes) else intent_from_wire(obj)


def _decode_message(
    obj: Any,
    parse: Callable[[Any], SignedIntent],
    limits: ApiLimits,
    oversized: Callable[[list[Any]], list[int]],
    intent_limit: int,
) -> Message:
    if not isinstance(obj, dict):
        raise ApiError(400, "bad_type", "a message must be a map")
    request_id = _request_id(obj.get("id"))
    try:
        unknown = [key for key in obj if key not in _MESSAGE_KEYS]
        if unknown:
            raise ApiError(400, "unknown_field", f"unknown field {unknown[0]!r}", field="id")
        if "intents" not in obj:
            raise ApiError(400, "missing_field", "a message needs 'intents'", field="intents")
        wait, timeout_s = wait_and_timeout(obj.get("wait"), obj.get("timeout_ms"), limits)
        items = _decode_items(obj["intents"], parse, limits, oversized, intent_limit)
    except ApiError as error:
        error.request_id = request_id
        raise
    return Message(request_id, items, wait, timeout_s)


def _request_id(value: Any) -> int | str:
    if type(value) is int and 0 <= value <= U64_MAX:
        return value
    if isinstance(value, str) and len(value) <= MAX_REQUEST_ID_CHARS:
        return value
    if value is None:
        raise ApiError(400, "missing_field", "a message needs an 'id'", field="id")
    raise ApiError(
        400, "bad_type", "id must be a u64 or a string of at most 64 characters", field="id"
    )


@dataclass(frozen=True, slots=True)
class PostHelpers:
    """What the API's POST routes share (node/api/app.py makes them; the encrypted-intent
    and listing routes take them): JSON and error answers, the bounded body read, the
    content-type check, and the ids a committed result gains (the order a `place` made,
    the withdrawal a `withdraw` made)."""

    json: Callable[[int, Any], Response]
    error: Callable[[ApiError], Response]
    read_body: Callable[[Request, ApiLimits], Awaitable[bytes]]
    check_content_type: Callable[[Request], None]
    add_result_ids: Callable[[list[dict[str, Any]]], None]


def wait_and_timeout(wait: Any, timeout_ms: Any, limits: ApiLimits) -> tuple[bool, float]:
    """`wait` is absent/None or "committed"; `timeout_ms` bounded by the limits."""
    if wait not in (None, "committed"):
        raise ApiError(400, "bad_value", "wait must be 'committed' or absent", field="wait")
    if timeout_ms is None:
        timeout_ms = limits.default_wait_timeout_ms
    if type(timeout_ms) is not int:
        raise ApiError(400, "bad_type", "timeout_ms must be an integer", field="timeout_ms")
    if not 1 <= timeout_ms <= limits.max_wait_timeout_ms:
        raise ApiError(
            400,
            "out_of_range",
            f"timeout_ms must be in 1..{limits.max_wait_timeout_ms}",
            field="timeout_ms",
        )
    return wait == "committed", timeout_ms / 1000


# ---------------------------------------------------------------------------------------
# Rate limits and submission


def client_key(scope: Mapping[str, Any]) -> Hashable:
    """Whom to charge: the peer IP, with IPv6 by /64 (one host usually owns a /64)."""
    client = scope.get("client")
    host = client[0] if client else None
    if not isinstance(host, str):
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped.packed
        return address.packed[:8]
    return address.packed


class Intake:
    """Rate limits and submission, shared by every HTTP request and WebSocket message."""

    __slots__ = ("_accounts", "_ips", "facade", "limits")

    def __init__(self, facade: NodeFacade, limits: ApiLimits) -> None:
        self.facade = facade
        self.limits = limits
        self._ips = TokenBuckets(limits.ip_limit, limits.max_rate_keys) if limits.ip_limit else None
        self._accounts = (
            TokenBuckets(limits.account_limit, limits.max_rate_keys)
            if limits.account_limit
            else None
        )

    def charge_request(self, client: Hashable, request_id: int | str | None = None) -> None:
        """Every request or message costs one IP token, before its body is even read.
        It may use the cancel reserve: refusing here would block a cancel we cannot see."""
        if self._ips is None:
            return
        wait_s = self._ips.take(client, 1.0, trio.current_time(), cancel_only=True)
        if wait_s != NO_WAIT:
            raise _rate_limited("requests from this address", wait_s, request_id)

    async def submit(
        self,
        client: Hashable,
        items: list[Item],
        wait: bool,
        timeout_s: float,
        request_id: int | str | None = None,
    ) -> list[dict[str, Any]]:
        """Per-item answers, in order (`id` as bytes or None)."""
        intents = [item for item in items if isinstance(item, SignedIntent)]
        self._charge_ip(client, intents, request_id)
        admitted, limited = self._check_accounts(intents)
        if limited and len(limited) == len(items):
            raise _rate_limited("intents from this account", min(limited.values()), request_id)
        results = await self._call_facade(admitted, wait, timeout_s)
        self._charge_admitted(admitted, results)
        by_intent = dict(zip(map(id, admitted), results, strict=True))
        answers: list[dict[str, Any]] = []
        for item in items:
            if isinstance(item, IntentError):
                answers.append(
                    _result(
                        None, "rejected", code=item.code, message=item.message, field=item.field
                    )
                )
            elif id(item) in limited:
                answers.append(
                    _result(
                        item.digest(self.facade.domain),
                        "rejected",
                        code="rate_limited",
                        message="intents from this account over the rate limit",
                        retry_after_s=limited[id(item)],
                    )
                )
            else:
                r = by_intent[id(item)]
                answers.append(
                    _result(r.intent_id, r.status, code=r.code, message=r.message, height=r.height)
                )
        return answers

    def _charge_ip(
        self, client: Hashable, intents: list[SignedIntent], request_id: int | str | None
    ) -> None:
        if self._ips is None or not intents:
            return
        cancels = sum(1 for intent in intents if intent.action["type"] in CANCEL_ACTIONS)
        orders = len(intents) - cancels
        cost = self._ips.limit.cost(orders, cancels)
        wait_s = self._ips.take(client, cost, trio.current_time(), cancel_only=orders == 0)
        if wait_s != NO_WAIT:
            raise _rate_limited("intents from this address", wait_s, request_id)

    def _check_accounts(
        self, intents: list[SignedIntent]
    ) -> tuple[list[SignedIntent], dict[int, float]]:
        """Which intents their accounts can afford, counting earlier intents of the same
        request; returns those and, for the others, `id(intent)` -> seconds to wait.
        Nothing is taken yet: see `_charge_admitted`."""
        if self._accounts is None:
            return intents, {}
        now = trio.current_time()
        admitted: list[SignedIntent] = []
        limited: dict[int, float] = {}
        pending: dict[bytes, float] = {}
        for intent in intents:
            is_cancel = intent.action["type"] in CANCEL_ACTIONS
            cost = self._accounts.limit.cancel_cost if is_cancel else 1.0
            spent = pending.get(intent.account, 0.0)
            wait_s = self._accounts.wait_for(
                intent.account, cost, now, cancel_only=is_cancel, pending=spent
            )
            if wait_s == NO_WAIT:
                pending[intent.account] = spent + cost
                admitted.append(intent)
            else:
                limited[id(intent)] = wait_s
        return admitted, limited

    def _charge_admitted(self, intents: list[SignedIntent], results: list[SubmitResult]) -> None:
        """An account pays only for intents the node admitted, and a node admits an
        intent only when its recovered signer is the account or an agent the account
        approved (as of its latest executed state; else `unauthorized_signer`). So only
        keys the account itself authorized ever spend its budget: anyone can forge or
        replay an intent that names someone else's account, and if that cost the account
        anything, or even held its tokens while signatures are checked, a stranger could
        silence it. The bucket is the account's, shared by its agents, rather than one
        per signing key: the check must come before the signature is recovered, when
        only the account is known, and 16 agents must not multiply an account's rate.
        Concurrent requests can overdraw an account a little; the debt is waited out."""
        if self._accounts is None:
            return
        now = trio.current_time()
        for intent, result in zip(intents, results, strict=True):
            # Refused at the door (forged, unauthorized signer, pool full) or resubmitted:
            # free. Refused by the engine in a block (it has a height): it took consensus
            # capacity, so it is paid for.
            if result.duplicate or (result.status == "rejected" and result.height is None):
                continue
            is_cancel = intent.action["type"] in CANCEL_ACTIONS
            cost = self._accounts.limit.cancel_cost if is_cancel else 1.0
            self._accounts.charge(intent.account, cost, now)

    def check_envelopes(
        self, client: Hashable, envelopes: list[Any]
    ) -> tuple[list[Any], dict[int, float]]:
        """Encrypted intents (node/api/fairness.py): the IP pays one order each now; the
        header's account must afford them (charged later, `charge_envelopes`)."""
        if self._ips is not None and envelopes:
            cost = self._ips.limit.cost(len(envelopes), 0)
            wait_s = self._ips.take(client, cost, trio.current_time())
            if wait_s != NO_WAIT:
                raise _rate_limited("envelopes from this address", wait_s, None)
        if self._accounts is None:
            return envelopes, {}
        now = trio.current_time()
        admitted: list[Any] = []
        limited: dict[int, float] = {}
        pending: dict[bytes, float] = {}
        for envelope in envelopes:
            spent = pending.get(envelope.account, 0.0)
            wait_s = self._accounts.wait_for(envelope.account, 1.0, now, pending=spent)
            if wait_s == NO_WAIT:
                pending[envelope.account] = spent + 1.0
                admitted.append(envelope)
            else:
                limited[id(envelope)] = wait_s
        return admitted, limited

    def charge_envelopes(self, envelopes: list[Any], results: list[SubmitResult]) -> None:
        """As `_charge_admitted`: an account pays for what the node admitted only."""
        if self._accounts is None:
            return
        now = trio.current_time()
        for envelope, result in zip(envelopes, results, strict=True):
            if result.duplicate or (result.status == "rejected" and result.height is None):
                continue
            self._accounts.charge(envelope.account, 1.0, now)

    async def _call_facade(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        if not intents:
            return []
        try:
            results = await self.facade.submit(intents, wait, timeout_s)
        except Exception:
            log.exception("facade.submit failed", intents=len(intents))
            raise ApiError(500, "internal", "the node failed to take the intents") from None
        if len(results) != len(intents):
            log.error("facade.submit broke its contract", sent=len(intents), got=len(results))
            raise ApiError(500, "internal", "the node answered the wrong number of results")
        return results


def _rate_limited(what: str, wait_s: float, request_id: int | str | None) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"{what} over the rate limit",
        retry_after_s=wait_s,
        request_id=request_id,
    )
