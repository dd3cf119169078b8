"""Calling a judge's OpenAI-compatible endpoint: one shared async client per judge, with its limits.

Every request and caller of a judge shares its :class:`JudgeClient`: at most ``max_concurrency`` calls hold a
slot at once (the endpoint is never flooded), each call has a deadline of ``timeout_s`` from taking its slot,
connection errors and 429/503 are retried with exponential backoff inside that deadline, and a cancelled
Score call cancels its calls (the HTTP request is dropped, so the endpoint stops generating). A call never
raises for a failed answer: it returns a :class:`JudgeFailure` with the outcome kind the sample's note gets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from reward_server.judges import metrics
from reward_server.judges.spec import JudgeSpec
from reward_server.outcomes import NoteKind

log = logging.getLogger(__name__)

#: First pause before a retry, in seconds; doubled on each retry (or the endpoint's Retry-After, if shorter
#: than what is left of the deadline).
BACKOFF_S = 0.2
#: Status codes that mean "busy, try again": rate limited, or temporarily unavailable.
RETRY_STATUS = (429, 503)


@dataclass(frozen=True)
class JudgeAnswer:
    """What the endpoint answered: the text and, per answer token, the top logprobs (token → logprob)."""

    text: str
    #: The first generated token as the endpoint wrote it, and its top alternatives (token, logprob).
    first_token: str = ""
    top_logprobs: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class JudgeFailure:
    """Why a call has no usable answer: the metrics' error kind, the note's kind, and a reason for people."""

    kind: str
    note_kind: NoteKind
    reason: str


class JudgeClient:
    """The endpoint of one judge, shared by every request (its slots are the judge's concurrency limit)."""

    def __init__(self, spec: JudgeSpec, api_key: str = "", transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.spec = spec
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=spec.max_concurrency, max_keepalive_connections=spec.max_concurrency)
        self._http = httpx.AsyncClient(
            base_url=spec.endpoint + "/",
            headers=headers,
            timeout=httpx.Timeout(spec.timeout_s),
            limits=limits,
            transport=transport,
            # Proxy variables of the environment are not for a judge on loopback or a private network.
            trust_env=False,
        )
        self._slots = asyncio.Semaphore(spec.max_concurrency)

    async def close(self) -> None:
        await self._http.aclose()

    async def probe(self, timeout_s: float = 3.0) -> str:
        """ "" when the endpoint lists the judge's model, else why not (start-up warns, never refuses)."""
        try:
            response = await self._http.get("models", timeout=timeout_s)
            response.raise_for_status()
            served = [m.get("id") for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            return f"endpoint {self.spec.public_endpoint} does not answer GET /models: {type(exc).__name__}: {exc}"
        if self.spec.model not in served:
            return f"endpoint {self.spec.public_endpoint} serves {served}, not model {self.spec.model!r}"
        return ""

    def body(self, messages: tuple[tuple[str, str], ...], labels: tuple[str, ...], max_tokens: int) -> dict:
        """The chat-completion request: temperature 0, logprobs, and vLLM's structured choice of the labels."""
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": [{"role": role, "content": content} for role, content in messages],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        if labels:
            body["logprobs"] = True
            body["top_logprobs"] = self.spec.top_logprobs
            if self.spec.structured_outputs:
                body["structured_outputs"] = {"choice": list(labels)}
        return body

    async def ask(self, body: Mapping[str, Any]) -> JudgeAnswer | JudgeFailure:
        """One call under the judge's limits; the answer, or why there is none (counted in metrics)."""
        judge = self.spec.name
        async with self._slots:
            metrics.IN_FLIGHT.labels(judge).inc()
            start = time.perf_counter()
            try:
                result = await self._deadline(body)
            finally:
                metrics.IN_FLIGHT.labels(judge).dec()
                metrics.LATENCY.labels(judge).observe(time.perf_counter() - start)
        metrics.CALLS.labels(judge, "ok" if isinstance(result, JudgeAnswer) else result.kind).inc()
        if isinstance(result, JudgeFailure):
            metrics.ERRORS.labels(judge, result.kind).inc()
        return result

    async def _deadline(self, body: Mapping[str, Any]) -> JudgeAnswer | JudgeFailure:
        last: list[JudgeFailure] = []  # the last retried failure, for a deadline that ends the retries
        try:
            async with asyncio.timeout(self.spec.timeout_s):
                return await self._post(body, last)
        except TimeoutError:
            if last:  # still failing when time ran out: that failure is the truth, not the clock
                why = last[-1]
                return JudgeFailure(why.kind, why.note_kind, f"{why.reason} (retried until timeout_s)")
            return JudgeFailure(
                "timeout", NoteKind.TIME_LIMIT, f"no answer within {self.spec.timeout_s:g} s (the judge's timeout_s)"
            )

    async def _post(self, body: Mapping[str, Any], last: list[JudgeFailure]) -> JudgeAnswer | JudgeFailure:
        where = self.spec.public_endpoint
        for attempt in range(self.spec.retries + 1):
            wait = BACKOFF_S * 2**attempt
            try:
                response = await self._http.post("chat/completions", json=body)
            except (httpx.TransportError, OSError) as exc:
                if isinstance(exc, httpx.TimeoutException):
                    raise TimeoutError from exc  # httpx's own clock ran out first: the same deadline
                failure = JudgeFailure(
                    "unreachable", NoteKind.UNAVAILABLE, f"endpoint {where} unreachable: {type(exc).__name__}: {exc}"
                )
            else:
                if response.status_code < 400:
                    return self._answer(response)
                failure = JudgeFailure(
                    "http_status",
                    NoteKind.UNAVAILABLE,
                    f"endpoint {where} answered HTTP {response.status_code}: {response.text[:300]}",
                )
                if response.status_code not in RETRY_STATUS:
                    return failure
                wait = max(wait, _retry_after(response))
            last.append(failure)
            if attempt < self.spec.retries:
                metrics.RETRIES.labels(self.spec.name).inc()
                await asyncio.sleep(wait)
        return last[-1]

    def _answer(self, response: httpx.Response) -> JudgeAnswer | JudgeFailure:
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            tokens = (choice.get("logprobs") or {}).get("content") or []
            first = tokens[0] if tokens else {}
            top = tuple((t["token"], float(t["logprob"])) for t in first.get("top_logprobs") or ())
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            return JudgeFailure(
                "bad_response",
                NoteKind.UNAVAILABLE,
                f"endpoint {self.spec.public_endpoint} sent no chat completion ({type(exc).__name__}: {exc}): "
                f"{response.text[:300]}",
            )
        for kind in ("prompt", "completion"):
            count = usage.get(f"{kind}_tokens")
            if isinstance(count, int) and count > 0:
                metrics.TOKENS.labels(self.spec.name, kind).inc(count)
        return JudgeAnswer(text, str(first.get("token", "")), top)


def _retry_after(response: httpx.Response) -> float:
    """The endpoint's Retry-After in seconds (0 when absent or a date)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return 0.0
