"""Completions from any OpenAI-compatible endpoint (vLLM, OpenAI, ...): concurrent chat requests with retries.

Plain HTTP (``httpx``) rather than an SDK: only ``/v1/models`` and ``/v1/chat/completions`` are needed, and vLLM
extensions (``chat_template``) pass through as extra body fields.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

#: HTTP statuses worth retrying: rate limits and server-side trouble.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class GenerationError(RuntimeError):
    """A request failed for good (after the retries, or with an error that retrying cannot fix)."""


def api_base(endpoint: str) -> str:
    """The ``.../v1`` base URL of an endpoint given as ``host:port``, ``http://host:port`` or ``.../v1``.

    Example:
        >>> api_base("127.0.0.1:8000")
        'http://127.0.0.1:8000/v1'
        >>> api_base("https://api.openai.com/v1/")
        'https://api.openai.com/v1'
    """
    url = endpoint.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith("/v1") else url + "/v1"


@dataclass(frozen=True)
class SamplingSettings:
    """Generation settings sent with every request."""

    n: int = 4
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    #: Extra body fields (e.g. vLLM's ``chat_template``).
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    """One generated completion."""

    text: str
    finish_reason: str | None


class ChatEndpoint:
    """An OpenAI-compatible endpoint: list models, and n chat completions per prompt with retries."""

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        retries: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        self.base = api_base(endpoint)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(headers=headers, timeout=timeout)
        self.retries = retries
        self.backoff_s = backoff_s

    async def aclose(self) -> None:
        await self.client.aclose()

    async def models(self) -> list[str]:
        """Model names the endpoint serves (``GET /v1/models``)."""
        body = await self._request("GET", "/models", None)
        return [m["id"] for m in body.get("data", [])]

    async def _request(self, method: str, route: str, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        """One call with retries on connection errors and retryable statuses; raises :class:`GenerationError`."""
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                # Exponential backoff with jitter, so concurrent requests do not retry in lockstep.
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                response = await self.client.request(method, self.base + route, json=payload)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 200:
                return response.json()
            error = f"HTTP {response.status_code}: {response.text.strip()[:500]}"
            if response.status_code not in RETRY_STATUSES:
                break
        raise GenerationError(f"{method} {self.base}{route} failed: {error}")

    async def chat(self, model: str, messages: Sequence[Mapping[str, Any]], settings: SamplingSettings) -> list[Choice]:
        """``settings.n`` completions of ``messages`` by ``model``.

        Endpoints that return fewer choices than ``n`` per call are asked again for the rest.
        """
        choices: list[Choice] = []
        while len(choices) < settings.n:
            payload: dict[str, Any] = {
                "model": model,
                "messages": list(messages),
                # vLLM refuses n > 1 with greedy sampling; greedy completions are then asked for one by one.
                "n": 1 if settings.temperature == 0 else settings.n - len(choices),
                "max_tokens": settings.max_tokens,
                "temperature": settings.temperature,
                "top_p": settings.top_p,
                **settings.extra,
            }
            if settings.seed is not None:
                payload["seed"] = settings.seed + len(choices)
            body = await self._request("POST", "/chat/completions", payload)
            got = [Choice(c["message"].get("content") or "", c.get("finish_reason")) for c in body.get("choices", [])]
            if not got:
                raise GenerationError(f"{model}: the endpoint answered no choices")
            choices.extend(got)
        return choices[: settings.n]
