"""TRL adapter: reward functions for ``GRPOTrainer`` that score through the remote reward service.

``remote_reward_funcs(client, ["correctness_reward_func", ...])`` returns one async callable per
reward, named after it (TRL logs ``rewards/<__name__>/mean``). TRL gathers async reward functions
of a batch together with the same ``prompts``/``completions``; the first one starts ONE Score call
for every reward and the others await that same call, so a batch costs one RPC per rank.

The rewards are checked against the server's catalogue when the functions are built, so a typo fails
before a model loads. A sample whose reward code raised on the server fails the step, as the same bug
would in-process; every other NaN becomes TRL's None, and its reason is logged once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc

from trainer_client.catalogue import Catalogue, readers_of_ids
from trainer_client.client import RewardClient
from trainer_client.convert import RewardLike, ScoreResult, completion_text, nan_to_none, reward_name, reward_spec
from trainer_client.errors import RemoteRewardError, RewardServiceError
from trainer_client.outcomes import Outcome, ReasonTally, SampleOutcome
from trainer_client.preflight import check_reward, service_catalogue

log = logging.getLogger(__name__)

#: Keyword arguments TRL passes that are not dataset columns.
TRL_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "environments", "completion_ids"})
#: Metric names added to TRL's logs (averaged per logging step like TRL's own).
RTT_METRIC = "reward_service/rtt_ms"
SERVER_METRIC = "reward_service/server_ms"
FAILED_METRIC = "reward_service/failed"
#: Per reward: the share of the batch's samples that scored NaN (None in TRL), next to TRL's ``rewards/<name>/mean``.
NAN_METRIC = "rewards/{}/nan_frac"
#: Per reward: the share that failed (reward error, time limit, unavailable), a subset of the NaN share.
FAILED_SAMPLES_METRIC = "rewards/{}/failed_frac"
#: What the build-time check advises when the server refuses the catalogue look-up.
_HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: "the server wants a token: RewardClient(target, token=...)",
    grpc.StatusCode.UNAVAILABLE: "start it with `reward-server` or fix the client's target",
}

RewardFunc = Callable[..., Awaitable[list[float | None]]]
OnError = Literal["raise", "none"]
OnRewardError = Literal["raise", "warn"]


@dataclass
class _Batch:
    """One Score call shared by the reward functions of one batch."""

    loop: asyncio.AbstractEventLoop
    prompts: Sequence[Any]
    completions: Sequence[Any]
    task: asyncio.Future
    consumed: set[str] = field(default_factory=set)


@dataclass
class CallStats:
    """What the shared caller did so far (for callbacks, logs and tests)."""

    calls: int = 0
    failures: int = 0
    rtt_ms: list[float] = field(default_factory=list)


def rank_path(path: str | Path) -> Path:
    """``path`` for this process: ``{rank}`` is filled in; with several ranks and no ``{rank}``, ``.rankN`` is added.

    Example:
        >>> str(rank_path("scored.jsonl")), str(rank_path("scored-{rank}.jsonl"))
        ('scored.jsonl', 'scored-0.jsonl')
    """
    rank, world = os.environ.get("RANK", "0"), int(os.environ.get("WORLD_SIZE", "1"))
    text = str(path)
    if "{rank}" in text:
        return Path(text.replace("{rank}", rank))
    path = Path(text)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}") if world > 1 else path


def batch_fields(kwargs: Mapping[str, Any], n: int, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per-sample ``fields`` from TRL's keyword arguments: every dataset column (a list of ``n`` values), each
    value as it is (an int stays an int, a dict a dict: they travel as ``typed_fields``).

    Example:
        >>> batch_fields({"answer": ["4", 5], "info": [{"k": 1}, {}], "trainer_state": None, "log_metric": print}, 2)
        [{'answer': '4', 'info': {'k': 1}}, {'answer': 5, 'info': {}}]
    """
    columns = {
        k: v
        for k, v in kwargs.items()
        if k not in TRL_KWARGS and isinstance(v, list | tuple) and len(v) == n and (only is None or k in only)
    }
    if only is not None:
        missing = [k for k in only if k not in columns]
        if missing:
            raise KeyError(f"dataset columns {missing} are not in this batch; have {sorted(columns)}")
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


class RemoteRewards:
    """The shared caller behind the reward functions of one :func:`remote_reward_funcs` call."""

    def __init__(
        self,
        client: RewardClient,
        rewards: Sequence[RewardLike],
        *,
        on_error: OnError = "raise",
        on_reward_error: OnRewardError = "raise",
        fields: Sequence[str] | None = None,
        record_to: str | Path | None = None,
    ) -> None:
        if on_error not in ("raise", "none"):
            raise ValueError(f"on_error must be 'raise' or 'none', got {on_error!r}")
        if on_reward_error not in ("raise", "warn"):
            raise ValueError(f"on_reward_error must be 'raise' or 'warn', got {on_reward_error!r}")
        for i, reward in enumerate(rewards):
            reward_spec(reward, i)  # a malformed reward fails here, not mid-training
        self.names = [reward_name(r) for r in rewards]
        if not self.names:
            raise ValueError("remote_reward_funcs needs at least one reward")
        duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rewards {duplicates} are listed twice; TRL logs rewards by name, so names must differ")
        self.client = client
        self.rewards = list(rewards)
        self.on_error = on_error
        self.on_reward_error = on_reward_error
        self.fields = list(fields) if fields is not None else None
        self.record_to = rank_path(record_to) if record_to else None
        if self.record_to is not None:
            self.record_to.parent.mkdir(parents=True, exist_ok=True)  # once, not per batch
        self.stats = CallStats()
        self._batch: _Batch | None = None
        #: The catalogue version the last Score answer named (logged at INFO whenever it changes).
        self.catalogue_version: str | None = None
        # Requested names whose reward reads completion_ids, and the catalogue version that said so (None: not
        # looked up yet). Looked up lazily: nothing is asked before the first batch that has token ids.
        self._id_readers: list[str] | None = None
        self._id_readers_version: str | None = None
        #: Every distinct reason a NaN came with so far (each is logged once).
        self.reasons = ReasonTally()

    def check(self) -> Catalogue:
        """Every reward exists on the server, is enabled and takes its params (``PreflightError`` if not).

        The catalogue also says which rewards read ``completion_ids``, so the first batch asks nothing more.
        """
        catalogue = service_catalogue(self.client, _HINTS)
        for reward in self.rewards:
            params = reward.get("params") if isinstance(reward, Mapping) else None
            check_reward(reward_name(reward), params or {}, catalogue.rewards)
        self._id_readers = readers_of_ids(self.names, catalogue)
        self._id_readers_version = catalogue.catalogue_version
        return catalogue

    async def scores_for(
        self, name: str, prompts: Sequence[Any], completions: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> list[float | None]:
        """``name``'s scores for this batch, starting the batch's one Score call if nobody has yet."""
        loop = asyncio.get_running_loop()
        batch = self._batch
        same = (
            batch is not None
            and batch.loop is loop
            and name not in batch.consumed  # a second call by the same function is the next batch
            and (batch.completions is completions or list(batch.completions) == list(completions))
            and (batch.prompts is prompts or list(batch.prompts) == list(prompts))
        )
        if batch is None or not same:
            task = loop.create_task(self._call(prompts, completions, kwargs))
            batch = self._batch = _Batch(loop, prompts, completions, task)
        batch.consumed.add(name)
        if len(batch.consumed) == len(self.names):
            self._batch = None  # every function has its scores: drop the references
        # shield: one function's cancellation must not cancel the call the others share.
        result = await asyncio.shield(batch.task)
        if result is None:
            return [None] * len(completions)
        scores = result.reward(name)
        errors = scores.failures(Outcome.REWARD_ERROR)
        if errors and self.on_reward_error == "raise":
            index, first = errors[0]
            raise RemoteRewardError(name, index, first.reason, len(errors), len(scores.scores))
        return nan_to_none(scores.scores)

    async def _call(
        self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> ScoreResult | None:
        fields = batch_fields(kwargs, len(completions), self.fields)
        samples = [
            {"prompt": p, "completion": c, "fields": f} for p, c, f in zip(prompts, completions, fields, strict=True)
        ]
        ids = kwargs.get("completion_ids")
        has_ids = ids is not None and len(ids) == len(samples)
        if has_ids and await self.id_readers():
            _attach_ids(samples, ids)
        log_metric = kwargs.get("log_metric")
        self.stats.calls += 1
        try:
            try:
                result = await self.client.score_async(samples, self.rewards, request_id=_request_id(kwargs))
            except RewardServiceError as exc:
                # A reload between our catalogue look-up and this call made a reward read token ids: send them.
                if not (has_ids and _wants_ids(exc) and "completion_ids" not in samples[0]):
                    raise
                self._id_readers = None
                _attach_ids(samples, ids)
                result = await self.client.score_async(samples, self.rewards, request_id=_request_id(kwargs))
        except RewardServiceError as exc:
            self.stats.failures += 1
            if callable(log_metric):
                log_metric(FAILED_METRIC, 1.0)
            if self.on_error == "raise":
                raise
            log.error(
                "REWARD SERVICE FAILED for a batch of %d samples; on_error='none' returns None for all of them "
                "(TRL gives them no advantage): %s",
                len(samples),
                exc,
            )
            return None
        self.stats.rtt_ms.append(result.rtt_ms)
        self._note_catalogue(result)
        self._log_reasons(result)
        if callable(log_metric):
            log_metric(RTT_METRIC, result.rtt_ms)
            log_metric(SERVER_METRIC, result.server_ms)
            log_metric(FAILED_METRIC, 0.0)
            for reward in result.rewards:
                n = max(len(reward.scores), 1)
                log_metric(NAN_METRIC.format(reward.requested), (reward.counts.total - reward.counts.scored) / n)
                log_metric(FAILED_SAMPLES_METRIC.format(reward.requested), reward.counts.failed / n)
        log_extra = kwargs.get("log_extra")
        if callable(log_extra):
            for column, values in extra_columns(result).items():
                log_extra(column, values)
        if self.record_to is not None:
            self._record(samples, result, kwargs.get("trainer_state"))
        return result

    async def id_readers(self) -> list[str]:
        """The requested rewards that read ``completion_ids`` (one ListRewards call, repeated after a reload).

        If the catalogue cannot be read, the ids are sent anyway (the Score call says what is wrong).
        """
        if self._id_readers is None:
            try:
                known = await self.client.catalogue_async()
            except RewardServiceError as exc:
                log.warning("cannot read the reward catalogue (%s); sending completion_ids with this batch", exc)
                return self.names
            self._id_readers = readers_of_ids(self.names, known)
            self._id_readers_version = known.catalogue_version
        return self._id_readers

    def _log_reasons(self, result: ScoreResult) -> None:
        """Log each distinct reason a NaN came with, once per run: a failure at WARNING, "does not apply" at INFO.

        A reward error that will raise is logged too, so the log shows it even where the exception is caught.
        """
        for reward in result.rewards:
            seen: dict[tuple[Outcome, str], list[int]] = {}
            for i, outcome in enumerate(reward.outcomes):
                if outcome.kind is not Outcome.SCORED or outcome.reason:  # a scored sample's note is logged too
                    seen.setdefault((outcome.kind, outcome.reason), []).append(i)
            for (kind, reason), indices in seen.items():
                capped = self._capped(reward.requested)
                if self.reasons.add(reward.requested, SampleOutcome(kind, reason), len(indices)):
                    level = logging.INFO if kind is Outcome.NOT_APPLICABLE else logging.WARNING
                    log.log(
                        level,
                        "reward %s: %s on %d of %d samples of a batch (first: sample %d), %s: %s "
                        "(each distinct reason is logged once)",
                        reward.requested,
                        kind.value,
                        len(indices),
                        len(reward.scores),
                        indices[0],
                        "the scores stand" if kind is Outcome.SCORED else "scored None",
                        reason or "(no reason given)",
                    )
                elif not capped and self._capped(reward.requested):
                    log.warning(
                        "reward %s: more than %d distinct reasons; further ones are counted, not logged",
                        reward.requested,
                        self.reasons.max_reasons,
                    )

    def _capped(self, reward: str) -> bool:
        return any(name == reward for name, _ in self.reasons.dropped)

    def _note_catalogue(self, result: ScoreResult) -> None:
        """Log the catalogue version that scored the run (once per change); a new one invalidates the id lookup."""
        version = result.catalogue_version
        if version != self.catalogue_version:
            log.info(
                "rewards %s scored by reward catalogue version %s (server %s at %s)",
                ",".join(self.names),
                version or "(none: server predates catalogue versions)",
                result.server_version,
                self.client.target,
            )
            self.catalogue_version = version
        if self._id_readers is not None and version != self._id_readers_version:
            self._id_readers = None  # the code changed (a plugin reload): ask again which rewards read ids

    def _record(self, samples: list[dict[str, Any]], result: ScoreResult, state: Any) -> None:
        """Append the batch and its scores as one JSON line (an audit trail of what was scored)."""
        line = {
            "step": getattr(state, "global_step", None),
            "request_id": result.request_id,
            "catalogue_version": result.catalogue_version,
            "server_version": result.server_version,
            "rtt_ms": result.rtt_ms,
            "server_ms": result.server_ms,
            "rewards": self.rewards,
            "samples": [
                {"prompt": s["prompt"], "completion": completion_text(s["completion"]), "fields": s["fields"]}
                for s in samples
            ],
            "scores": {name: nan_to_none(scores) for name, scores in result.as_dict().items()},
            "total": nan_to_none(result.total),
        }
        notes = {
            r.requested: {
                str(i): {"kind": o.kind.value, "reason": o.reason} for i, o in enumerate(r.outcomes) if o.reason
            }
            for r in result.rewards
            if r.notes
        }
        if notes:
            line["notes"] = notes
        extras = {r.requested: r.extra_columns for r in result.rewards if r.extra_columns}
        if extras:
            line["extra_columns"] = extras
        with self.record_to.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")


def extra_columns(result: ScoreResult) -> dict[str, list[str]]:
    """Every reward's extra columns under the names TRL's completions table shows.

    A column keeps its own name (``gold_parsed``, as TRL's ``accuracy_reward`` logs it); when an earlier reward
    of the same call already has that name, it becomes ``<reward>/<column>``, so each is logged exactly once
    and TRL's table keeps one value per sample in every column.

    Example:
        >>> from trainer_client.convert import RewardScores
        >>> a = RewardScores("accuracy_reward", "accuracy_reward", [1.0], 1.0, extra_columns={"solution": ["4"]})
        >>> b = RewardScores("r", "r", [1.0], 1.0, extra_columns={"solution": ["4"], "x": ["y"]})
        >>> extra_columns(ScoreResult([a, b], [2.0], "id", "1", 0.0, 0.0))
        {'solution': ['4'], 'r/solution': ['4'], 'x': ['y']}
    """
    out: dict[str, list[str]] = {}
    for reward in result.rewards:
        for column, values in reward.extra_columns.items():
            out[f"{reward.requested}/{column}" if column in out else column] = values
    return out


def _attach_ids(samples: list[dict[str, Any]], ids: Sequence[Any]) -> None:
    for sample, sample_ids in zip(samples, ids, strict=True):
        sample["completion_ids"] = sample_ids


def _wants_ids(exc: RewardServiceError) -> bool:
    """The server refused the call because a reward reads token ids the samples lack."""
    return exc.code == grpc.StatusCode.INVALID_ARGUMENT and "completion_ids" in exc.details


def _request_id(kwargs: Mapping[str, Any]) -> str:
    """``grpo-r<rank>-s<step>-<random>``: server logs show which rank and step a call came from."""
    step = getattr(kwargs.get("trainer_state"), "global_step", None)
    rank = os.environ.get("RANK", "0")
    return f"grpo-r{rank}-s{step if step is not None else 'x'}-{uuid.uuid4().hex[:8]}"


def _reward_func(shared: RemoteRewards, name: str) -> RewardFunc:
    async def reward_func(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        return await shared.scores_for(name, prompts, completions, kwargs)

    reward_func.__name__ = reward_func.__qualname__ = name
    reward_func.__doc__ = f"Remote reward {name!r}, scored by the reward service at {shared.client.target}."
    reward_func.remote = shared  # type: ignore[attr-defined]
    return reward_func


def remote_reward_funcs(
    client: RewardClient,
    rewards: Sequence[RewardLike],
    *,
    on_error: OnError = "raise",
    on_reward_error: OnRewardError = "raise",
    fields: Sequence[str] | None = None,
    record_to: str | Path | None = None,
    check: bool = True,
) -> list[RewardFunc]:
    """TRL-ready async reward functions, one per reward, sharing one Score call per batch.

    Args:
        client: the reward service client.
        rewards: names (aliases such as ``"correctness_reward_func"`` work) or ``{"name", "weight", "params"}``
            dicts. Scores come back unweighted; weight them with ``GRPOConfig.reward_weights``.
        on_error: ``"raise"`` (default) fails the step when the service fails after its retries; ``"none"``
            logs an error and returns None for the whole batch, which TRL leaves out. Never a fake 0.
        on_reward_error: a sample whose reward code raised on the server (``NOTE_KIND_REWARD_ERROR``):
            ``"raise"`` (default) fails the step with :class:`~trainer_client.errors.RemoteRewardError` naming the
            reward, the first sample and the reason, as the same bug would in-process; ``"warn"`` scores it None
            and logs the reason once. Other NaNs (time limit, unavailable, does not apply) are always None, each
            distinct reason logged once; per reward, the NaN share goes to TRL's metrics (``rewards/<name>/nan_frac``
            and ``rewards/<name>/failed_frac``).
        fields: dataset columns to send as sample fields (default: every column TRL passes), with their JSON types.
        record_to: append every scored batch (samples, scores, extra columns, catalogue version, round trip) to
            this JSONL file (one file per rank: ``{rank}`` in the name is replaced, else ``.rankN`` is added when
            there are several ranks).
        check: look the rewards up in the server's catalogue now (names, enabled, params), raising
            :class:`~trainer_client.errors.PreflightError` before any model loads; False skips it (no call).

    Example:
        >>> client = RewardClient("127.0.0.1:50051")
        >>> funcs = remote_reward_funcs(client, ["xml_correctness", {"name": "xml_integer"}], check=False)
        >>> [f.__name__ for f in funcs]
        ['xml_correctness', 'xml_integer']
        >>> funcs[0].remote is funcs[1].remote
        True
    """
    shared = RemoteRewards(
        client, rewards, on_error=on_error, on_reward_error=on_reward_error, fields=fields, record_to=record_to
    )
    if check:
        shared.check()
    return [_reward_func(shared, name) for name in shared.names]
