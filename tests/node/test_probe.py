"""The start-up probe (node/api/probe.py): what it answers while the engine restores,
on a real socket, and that it hands the same listening socket back untouched."""

from __future__ import annotations

import json
import socket

import httpx

from node.api.probe import MAX_REQUEST_BYTES, StartupProbe, StartupProgress, answer, listen


def _parse(raw: bytes) -> tuple[int, dict[str, object]]:
    head, body = raw.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ")[1])
    return status, json.loads(body)


def test_answers_healthz_200_and_everything_else_503_with_the_progress() -> None:
    progress = StartupProgress(phase="restoring", height=7, target=12)
    status, body = _parse(answer(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n", progress))
    assert (status, body) == (200, {"status": "ok", "phase": "restoring"})
    for path in (b"/readyz", b"/readyz?x=1", b"/v1/status", b"/"):
        status, body = _parse(answer(b"GET " + path + b" HTTP/1.1\r\n\r\n", progress))
        assert status == 503
        assert body["phase"] == "restoring"
        assert body["committed_height"] == 7 and body["target_height"] == 12
        assert body["error"] == {
            "code": "not_ready",
            "message": "the node is not ready: restoring (engine at height 7 of 12 on disk)",
        }
    status, body = _parse(answer(b"\x16\x03\x01 garbage", progress))
    assert status == 400


def test_serves_on_a_real_socket_and_hands_it_back_listening() -> None:
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    progress = StartupProgress()
    try:
        with StartupProbe(sock, progress):
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            progress.height, progress.target = 3, 9
            r = httpx.get(f"http://127.0.0.1:{port}/readyz")
            assert r.status_code == 503 and r.json()["committed_height"] == 3
            # An oversized head gets a 400 and the probe keeps answering.
            with socket.create_connection(("127.0.0.1", port)) as raw:
                raw.sendall(b"GET /" + b"a" * MAX_REQUEST_BYTES + b" HTTP/1.1\r\n")
                assert raw.recv(100).startswith(b"HTTP/1.1 400")
            # A client that connects and says nothing does not stop the next one for
            # longer than the I/O timeout.
            with socket.create_connection(("127.0.0.1", port)):
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10.0)
                assert r.status_code == 200
        # Stopped: the socket still listens (connections wait in the backlog for the
        # real API) and answers nothing meanwhile.
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as waiting:
            waiting.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            waiting.settimeout(0.3)
            try:
                got = waiting.recv(10)
            except TimeoutError:
                got = None
            assert got is None
    finally:
        sock.close()
