"""The API port while the member restores its engine, before the real API exists.

A restart replays the committed log above the latest snapshot inside `Node(...)`, which
runs on the main thread and may take seconds. During that time a supervisor must still
tell "starting" from "dead" (OPERATIONS.md, "Probes"), so `seqnet node run` binds the
API socket first and this responder answers on it from a thread: `/healthz` 200, and
`/readyz` (and every other path) 503 `not_ready` with the phase and the replay's
progress. When the restore is done the same listening socket is handed to the real API
(hypercorn, `fd://`), so the port never closes in between; connections that wait in the
backlog then are served by the real API.

It speaks just enough HTTP/1.1 for probes: one request a connection, bounded reads,
a short socket timeout, one connection at a time (a probe is a few hundred bytes).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

MAX_REQUEST_BYTES: Final = 8_192  # request line and headers; more is refused
IO_TIMEOUT_S: Final = 2.0  # a client that sends nothing does not hold the responder
_POLL_S: Final = 0.1  # how often the accept loop looks whether it must stop


@dataclass(slots=True)
class StartupProgress:
    """Written by the restore (one attribute store a block), read by the responder."""

    phase: str = "restoring"
    height: int = 0  # committed height the engine has reached
    target: int = 0  # committed height on disk: the restore ends there

    def body(self) -> dict[str, object]:
        message = (
            f"the node is not ready: {self.phase} "
            f"(engine at height {self.height} of {self.target} on disk)"
        )
        return {
            "error": {"code": "not_ready", "message": message},
            "phase": self.phase,
            "committed_height": self.height,
            "target_height": self.target,
        }


def listen(host: str, port: int, backlog: int = 128) -> socket.socket:
    """The API's listening socket, bound now (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _response(status: int, reason: str, body: Mapping[str, object]) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + payload


def answer(request_head: bytes, progress: StartupProgress) -> bytes:
    """The response to one request head (request line and headers, or a part of it)."""
    line = request_head.split(b"\r\n", 1)[0].split(b" ")
    if len(line) != 3 or not line[2].startswith(b"HTTP/1."):
        bad = {"error": {"code": "bad_request", "message": "not an HTTP/1.x request"}}
        return _response(400, "Bad Request", bad)
    path = line[1].split(b"?", 1)[0]
    if path == b"/healthz":
        return _response(200, "OK", {"status": "ok", "phase": progress.phase})
    return _response(503, "Service Unavailable", progress.body())


class StartupProbe:
    """Answers on `sock` from a daemon thread until `stop()`; the socket stays open
    (it belongs to the caller, who hands it to the real API)."""

    def __init__(self, sock: socket.socket, progress: StartupProgress) -> None:
        self._sock = sock
        self.progress = progress
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="startup-probe", daemon=True)

    def __enter__(self) -> StartupProbe:
        self._sock.settimeout(_POLL_S)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self._sock.settimeout(None)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the socket was closed under us: nothing left to serve
            # A client that went away or timed out is its own problem.
            with conn, contextlib.suppress(OSError):
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT_S)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST_BYTES:
            chunk = conn.recv(MAX_REQUEST_BYTES - len(head))
            if not chunk:
                break
            head += chunk
        if b"\r\n\r\n" not in head:
            big = {"error": {"code": "bad_request", "message": "incomplete or oversized request"}}
            conn.sendall(_response(400, "Bad Request", big))
            return
        conn.sendall(answer(head, self.progress))
