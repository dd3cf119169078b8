"""lora-eval's OpenAI-compatible client against a small real HTTP server on loopback.

The server stands in for third-party endpoints that vLLM does not imitate: one that fails transiently (503), one
that answers fewer choices than ``n``, and one that refuses a request for good (400).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference.generate import ChatEndpoint, GenerationError, SamplingSettings


class Endpoint(BaseHTTPRequestHandler):
    """``/v1/models`` and ``/v1/chat/completions``: the first chat call answers 503, then one choice per call."""

    calls: list[dict] = []  # noqa: RUF012 - shared on purpose: the test reads what the server received

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "base"}, {"id": "tuned"}]})

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Endpoint.calls.append({**payload, "authorization": self.headers.get("Authorization")})
        if payload["model"] == "refused":
            self._send(400, {"error": {"message": "model 'refused' does not exist"}})
        elif len(Endpoint.calls) == 1:
            self._send(503, {"error": {"message": "warming up"}})
        else:
            text = f"{payload['model']} #{len(Endpoint.calls)}"
            self._send(200, {"choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}]})


@pytest.fixture
def endpoint_url() -> Iterator[str]:
    Endpoint.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_retries_and_tops_up_to_n_choices(endpoint_url: str) -> None:
    async def scenario() -> tuple[list[str], list]:
        endpoint = ChatEndpoint(endpoint_url, api_key="k", retries=2, backoff_s=0.01)
        try:
            models = await endpoint.models()
            choices = await endpoint.chat("tuned", [{"role": "user", "content": "hi"}], SamplingSettings(n=3, seed=5))
        finally:
            await endpoint.aclose()
        return models, choices

    models, choices = asyncio.run(scenario())
    assert models == ["base", "tuned"]
    # Call 1 got a 503 and was retried; calls 2-4 each returned one choice until there were n = 3.
    assert [c.text for c in choices] == ["tuned #2", "tuned #3", "tuned #4"]
    assert [c["n"] for c in Endpoint.calls] == [3, 3, 2, 1]
    assert [c["seed"] for c in Endpoint.calls] == [5, 5, 6, 7]  # a different seed per completion
    assert {c["authorization"] for c in Endpoint.calls} == {"Bearer k"}


def test_client_errors_are_not_retried(endpoint_url: str) -> None:
    async def scenario() -> None:
        endpoint = ChatEndpoint(endpoint_url, retries=3, backoff_s=0.01)
        try:
            await endpoint.chat("refused", [{"role": "user", "content": "hi"}], SamplingSettings(n=1))
        finally:
            await endpoint.aclose()

    with pytest.raises(GenerationError, match=r"HTTP 400: .*model 'refused' does not exist"):
        asyncio.run(scenario())
    assert len(Endpoint.calls) == 1


def test_greedy_asks_one_completion_per_call(endpoint_url: str) -> None:
    async def scenario() -> int:
        endpoint = ChatEndpoint(endpoint_url, retries=1, backoff_s=0.01)
        try:
            choices = await endpoint.chat(
                "base", [{"role": "user", "content": "hi"}], SamplingSettings(n=2, temperature=0)
            )
        finally:
            await endpoint.aclose()
        return len(choices)

    assert asyncio.run(scenario()) == 2
    assert [c["n"] for c in Endpoint.calls] == [1, 1, 1]  # the 503, then one call per greedy completion
