"""A judge as a reward of the catalogue: its params, its fields, and its ``score_async`` over a batch.

Per batch, each criterion's template is rendered for every sample (in a thread), identical rendered prompts
are sent once, every distinct prompt is one call under the judge's limits (:class:`JudgeClient`), and each
sample's answer becomes its score: the expected value over the labels, the chosen label's value, or the
number the judge wrote; a rubric's score is the weighted mean of its criteria's. A sample whose call or
answer failed is NaN with a note naming the judge and the error, never 0; the other samples still score.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reward_server.errors import FailedPrecondition
from reward_server.judges import metrics
from reward_server.judges.client import JudgeAnswer, JudgeClient, JudgeFailure
from reward_server.judges.scores import argmax_score, expected_score
from reward_server.judges.spec import SCORE_MODES, Criterion, JudgeSpec
from reward_server.judges.templates import Messages, render_all
from reward_server.outcomes import Note, NoteKind
from reward_server.registry import Batch, BatchResult, Param, ParamValue, Reward

#: Longest answer a request may ask for (``max_tokens``): a judge answers in a label or a short text.
MAX_TOKENS_LIMIT = 4096


@dataclass(frozen=True)
class _Score:
    value: float
    answer: str


def judge_reward(spec: JudgeSpec, client: JudgeClient) -> Reward:
    """The catalogue entry of ``spec``, scoring through ``client``.

    The fields its templates use are fields it reads (ListRewards lists them; a request without one is
    refused up front); its endpoint (without credentials), model and mode are in ListRewards.
    """
    params = [Param("max_tokens", int, spec.max_tokens, "most tokens the judge may answer in")]
    if spec.has_choices:
        params.insert(
            0, Param("score", str, spec.score, "expected (Σ p(label) × value over the labels) or argmax (its label)")
        )

    def check(*, max_tokens: int, score: str = spec.score) -> None:
        if score not in SCORE_MODES:
            raise ValueError(f"param 'score' must be one of {', '.join(SCORE_MODES)}, got {score!r}")
        if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
            raise ValueError(f"param 'max_tokens' must be between 1 and {MAX_TOKENS_LIMIT}, got {max_tokens}")

    def in_workers(batch: Batch, **params: ParamValue) -> BatchResult:
        raise FailedPrecondition(f"judge {spec.name} is scored in the server process, not in a worker")

    async def score(batch: Batch, *, max_tokens: int, score: str = spec.score) -> BatchResult:
        return await score_batch(spec, client, batch, score, max_tokens)

    return Reward(
        spec.name,
        (),
        f"LLM judge: model {spec.model} at {spec.public_endpoint}; {spec.mode}",
        tuple(params),
        in_workers,
        requires_model=True,
        score_async=score,
        model_id=spec.model,
        device=spec.public_endpoint,
        reads=frozenset({"prompts", "fields"} if spec.fields else {"prompts"}),
        required_fields=spec.fields,
        check=check,
        source="config: judges",
        code_version=_version(spec),
    )


async def score_batch(spec: JudgeSpec, client: JudgeClient, batch: Batch, mode: str, max_tokens: int) -> BatchResult:
    """Every sample's score (see the module docstring); failures are per sample."""
    n = len(batch)
    rendered = await asyncio.to_thread(_render, spec, batch)
    # Identical prompts (same messages and labels) go once; the cancelled Score call cancels these calls.
    distinct: dict[tuple, dict] = {}
    keys: list[list[tuple | Exception]] = []
    for criterion, messages in zip(spec.criteria, rendered, strict=True):
        labels = tuple(criterion.choices or ())
        row: list[tuple | Exception] = []
        for m in messages:
            if isinstance(m, Exception):
                row.append(m)
                continue
            key = (m, labels)
            if key in distinct:
                metrics.DEDUPLICATED.labels(spec.name).inc()
            else:
                distinct[key] = client.body(m, labels, max_tokens)
            row.append(key)
        keys.append(row)
    answers = dict(zip(distinct, await asyncio.gather(*(client.ask(b) for b in distinct.values())), strict=True))
    outcomes = [
        [_sample(spec, c, key, answers, mode) for key in row] for c, row in zip(spec.criteria, keys, strict=True)
    ]
    result = BatchResult([math.nan] * n)
    texts: list[list[str]] = [[] for _ in range(n)]
    for criterion, row in zip(spec.criteria, outcomes, strict=True):
        for i, outcome in enumerate(row):
            if isinstance(outcome, JudgeFailure):
                where = f"judge {spec.name}" + (f" ({criterion.name})" if spec.is_rubric else "")
                result.notes.setdefault(i, Note(f"{where}: {outcome.reason}", outcome.note_kind))
            else:
                texts[i].append(_labelled(spec, criterion, outcome.answer))
    weights = math.fsum(c.weight for c in spec.criteria)
    for i in range(n):
        if i not in result.notes:  # a rubric with a failed criterion is NaN: a partial mean would be another scale
            parts = [row[i] for row in outcomes]
            result.scores[i] = (
                math.fsum(c.weight * p.value for c, p in zip(spec.criteria, parts, strict=True)) / weights
            )
    result.extras[f"{spec.name}_answer"] = ["; ".join(t for t in parts if t) for parts in texts]
    return result


def _render(spec: JudgeSpec, batch: Batch) -> list[list[Messages | Exception]]:
    """Per criterion, per sample: the messages, or why the template failed on that sample."""
    fields = {name: batch.fields[name] for name in spec.fields}
    return [
        render_all(
            c.template, spec.system, batch.completions, batch.prompts, fields, spec.conversation_variable, c.text
        )
        for c in spec.criteria
    ]


def _sample(
    spec: JudgeSpec, criterion: Criterion, key: tuple | Exception, answers: dict, mode: str
) -> _Score | JudgeFailure:
    """One sample's score for one criterion, or why it has none (a bad answer counts once per sample it scores)."""
    if isinstance(key, Exception):
        return _bad(spec, "template", f"the template failed on this sample: {type(key).__name__}: {key}")
    answer: JudgeAnswer | JudgeFailure = answers[key]
    if isinstance(answer, JudgeFailure):
        return answer
    try:
        if criterion.choices is None:
            assert criterion.number is not None
            return _Score(criterion.number.score(answer.text), answer.text)
        if mode == "argmax":
            return _Score(argmax_score(answer.text, criterion.choices), answer.text)
        if not answer.top_logprobs:
            raise ValueError("the endpoint sent no top logprobs for the first token (score: argmax needs none)")
        return _Score(
            expected_score(answer.top_logprobs, criterion.choices, answer.text, answer.first_token), answer.text
        )
    except ValueError as exc:
        return _bad(spec, "bad_answer", str(exc))


def _bad(spec: JudgeSpec, kind: str, reason: str) -> JudgeFailure:
    """An answer (or template) that gives no score: the judge's own error, not the endpoint's availability."""
    metrics.ERRORS.labels(spec.name, kind).inc()
    return JudgeFailure(kind, NoteKind.REWARD_ERROR, reason)


def _labelled(spec: JudgeSpec, criterion: Criterion, answer: str) -> str:
    return f"{criterion.name}: {answer}" if spec.is_rubric and answer else answer


def _version(spec: JudgeSpec, sources: Sequence[Path] = tuple(Path(__file__).parent.glob("*.py"))) -> str:
    """A hash of the judge's configuration and of this package's code: moves when either changes."""
    digest = hashlib.sha256(repr(spec).encode())
    for path in sorted(sources):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
