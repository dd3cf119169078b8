"""``RemoteScorer``: the one piece every trainer integration shares.

- **Picklable, connected lazily per process.** Only the settings travel; the ``RewardClient`` is made on first
  use in each process (AReaL runs reward functions in a process pool, verl and slime in Ray actors), and again
  after a fork (a gRPC channel must not cross one).
- **Concurrent calls coalesced.** verl's reward loop, slime and OpenRLHF call a reward function once per sample,
  many at once. Calls that arrive within ``window_s`` of the first one go out as one Score call (at most
  ``max_batch`` samples), so the server's worker pool sees a batch, not hundreds of one-sample calls.
- **Per-sample outcomes.** :class:`SampleResult` carries each reward's score, the weighted total and whether the
  sample failed (a note of kind REWARD_ERROR, TIME_LIMIT or UNAVAILABLE), so no adapter can turn a failure into
  a silent number.

A call that fails as a whole (the service unreachable after the client's retries, a request the server refuses)
raises :class:`~trainer_client.errors.RewardServiceError` in every caller of that batch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reward.values import to_value
from trainer_client.client import RewardClient
from trainer_client.convert import ScoreResult, to_sample
from trainer_client.integrations.settings import Settings
from trainer_client.outcomes import SampleOutcome

log = logging.getLogger(__name__)

#: A sample as ``RewardClient.score`` takes it: ``{"prompt", "completion", "fields", "completion_ids"}``.
SampleDict = dict[str, Any]


@dataclass(frozen=True)
class SampleResult:
    """One sample's scores, as every integration hands them on.

    Attributes:
        total: what a trainer trains on: the weighted total of the rewards (NaN skipped; 0.0 when no reward
            applies, as TRL's ``nansum``); for a failed sample ``failure_score`` instead.
        scores: requested reward name → its unweighted score (NaN where it did not score).
        failed: True when a reward failed on this sample (reward error, time limit, unavailable).
        failures: requested reward name → the failed outcome (kind and the server's reason).
    """

    total: float
    scores: dict[str, float]
    failed: bool = False
    failures: dict[str, SampleOutcome] = field(default_factory=dict)


def sample_results(result: ScoreResult, failure_score: float) -> list[SampleResult]:
    """Per-sample view of one Score answer.

    Example:
        >>> from trainer_client.convert import RewardScores
        >>> from trainer_client.outcomes import Outcome
        >>> r = RewardScores("r", "r", [2.0, math.nan, math.nan], 1.0, {1: "boom"}, kinds={1: Outcome.REWARD_ERROR})
        >>> out = sample_results(ScoreResult([r], [2.0, math.nan, math.nan], "id", "1", 0.0, 0.0), -1.0)
        >>> [(s.total, s.failed) for s in out]
        [(2.0, False), (-1.0, True), (0.0, False)]
        >>> out[1].failures["r"].reason
        'boom'
    """
    outcomes = {reward.requested: reward.outcomes for reward in result.rewards}
    out = []
    for i, total in enumerate(result.total):
        failures = {name: o[i] for name, o in outcomes.items() if o[i].kind.failed}
        if failures:
            total = failure_score
        elif math.isnan(total):
            total = 0.0  # no reward applies to this sample: TRL's nansum gives it 0 as well
        scores = {reward.requested: reward.scores[i] for reward in result.rewards}
        out.append(SampleResult(total, scores, bool(failures), failures))
    return out


def json_fields(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The entries of a trainer's per-sample mapping (verl's ``extra_info``, slime's ``metadata``, AReaL's row)
    that travel as sample fields: every JSON value. Others (images, tensors of objects) stay behind, logged once
    per key, since no reward could read them anyway.

    Example:
        >>> json_fields({"question": "2+2?", "n": 4, "image": object()}, "extra_info")
        {'question': '2+2?', 'n': 4}
    """
    out = {}
    for key, value in values.items():
        tolist = getattr(value, "tolist", None)  # numpy values, as verl's non_tensor_batch holds them
        value = tolist() if callable(tolist) and not isinstance(value, str | bytes) else value
        try:
            to_value(value, repr(key))
        except (TypeError, ValueError):
            if (where, key) not in _dropped:
                _dropped.add((where, key))
                log.warning("%s[%r] (%s) is not a JSON value; not sent as a field", where, key, type(value).__name__)
            continue
        out[str(key)] = value
    return out


_dropped: set[tuple[str, str]] = set()


@dataclass
class _Batch:
    samples: list[SampleDict] = field(default_factory=list)
    #: (future, start, count) per caller: its slice of ``samples``.
    waiters: list[tuple[asyncio.Future, int, int]] = field(default_factory=list)
    sent: bool = False


class RemoteScorer:
    """Scores samples on the reward service for one integration (see the module docstring).

    Example:
        >>> import pickle
        >>> scorer = RemoteScorer(Settings.resolve(target="127.0.0.1:1", rewards=["xml_correctness"]))
        >>> pickle.loads(pickle.dumps(scorer)).settings == scorer.settings
        True
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: RewardClient | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._open: dict[asyncio.AbstractEventLoop, _Batch] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # the background loop of sync callers
        #: Score calls this scorer made in this process (what coalescing saves shows here).
        self.calls = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])

    def client(self) -> RewardClient:
        """This process's client, made on first use (and again in a forked child)."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                s = self.settings
                self._client = RewardClient(s.target, deadline_s=s.deadline_s, token=s.token)
                self._pid = os.getpid()
                self._open = {}
                self._loop = None
            return self._client

    def sample(
        self,
        completion: Any,
        *,
        prompt: Any = None,
        label: Any = None,
        fields: Mapping[str, Any] = (),
        completion_ids: Any = None,
        index: int = 0,
    ) -> SampleDict:
        """A sample dict with the label under ``label_field`` (it wins over a field of the same name); checked
        here, so a malformed sample fails its own caller rather than the batch it would have joined."""
        merged = dict(fields)
        if label is not None:
            merged[self.settings.label_field] = label
        sample = {"prompt": prompt, "completion": completion, "fields": merged}
        if completion_ids is not None:
            sample["completion_ids"] = completion_ids
        to_sample(sample, index)
        return sample

    # -- one call --------------------------------------------------------------------------------------------

    def score_now(self, samples: Sequence[SampleDict]) -> list[SampleResult]:
        """Score ``samples`` now, from any thread (Score calls of at most ``max_batch`` samples)."""
        client, out = self.client(), []
        for start in range(0, len(samples), self.settings.max_batch):
            self.calls += 1
            result = client.score(samples[start : start + self.settings.max_batch], self.settings.rewards)
            out += self._results(result)
        return out

    async def score_now_async(self, samples: Sequence[SampleDict]) -> list[SampleResult]:
        """:meth:`score_now` on the running event loop."""
        client, out = self.client(), []
        for start in range(0, len(samples), self.settings.max_batch):
            self.calls += 1
            result = await client.score_async(samples[start : start + self.settings.max_batch], self.settings.rewards)
            out += self._results(result)
        return out

    def _results(self, result: ScoreResult) -> list[SampleResult]:
        results = sample_results(result, self.settings.failure_score)
        failed = [r for r in results if r.failed]
        if failed:
            first = next(iter(failed[0].failures.items()))
            log.warning(
                "reward service: %d of %d samples failed and carry failure_score=%s, flagged failed "
                "(request_id=%s; first: %s %s: %s)",
                len(failed),
                len(results),
                self.settings.failure_score,
                result.request_id,
                first[0],
                first[1].kind.value,
                first[1].reason,
            )
        return results

    # -- coalesced -------------------------------------------------------------------------------------------

    async def score(self, samples: Sequence[SampleDict]) -> list[SampleResult]:
        """Score ``samples`` together with whatever else this event loop asks for within ``window_s``."""
        self.client()  # (re)sets the per-process state before this loop's batch is looked up
        loop = asyncio.get_running_loop()
        batch = self._open.get(loop)
        if batch is None:
            batch = self._open[loop] = _Batch()
            loop.call_later(self.settings.window_s, self._flush, loop, batch)
        future: asyncio.Future = loop.create_future()
        batch.waiters.append((future, len(batch.samples), len(samples)))
        batch.samples.extend(samples)
        if len(batch.samples) >= self.settings.max_batch:
            self._flush(loop, batch)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
        if self._open.get(loop) is batch:
            del self._open[loop]
        if not batch.sent:
            batch.sent = True
            loop.create_task(self._send(batch))

    async def _send(self, batch: _Batch) -> None:
        try:
            results = await self.score_now_async(batch.samples)
        except BaseException as exc:  # every caller of the batch gets the call's own error
            for future, _, _ in batch.waiters:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for future, start, count in batch.waiters:
            if not future.done():  # a caller that was cancelled meanwhile
                future.set_result(results[start : start + count])

    def score_sync(self, samples: Sequence[SampleDict]) -> list[SampleResult]:
        """:meth:`score` for threads (OpenRLHF calls its reward function from ``asyncio.to_thread``): calls from
        every thread of the process meet on one background event loop and are coalesced there."""
        self.client()
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                self._loop = asyncio.new_event_loop()
                started = threading.Event()
                self._loop.call_soon(started.set)
                threading.Thread(target=self._loop.run_forever, name="reward-service-coalescer", daemon=True).start()
                started.wait()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(self.score(samples), loop).result()


_scorers: dict[str, RemoteScorer] = {}
_scorers_lock = threading.Lock()


def scorer_for(settings: Settings) -> RemoteScorer:
    """The process's one scorer for ``settings`` (module-level adapters resolve their settings per call)."""
    key = settings.key()
    with _scorers_lock:
        scorer = _scorers.get(key)
        if scorer is None:
            scorer = _scorers[key] = RemoteScorer(settings)
        return scorer
