"""How the scoring engine cuts a request into worker tasks: coverage, groups kept whole, identical scores.

The end-to-end test runs the real engine with a real spawned worker pool and compares every score
with the reward functions run in-process over the whole batch.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reward_server.rewards  # noqa: F401 - registers the catalogue
from reward_server.calls import Job, RewardCall, Samples
from reward_server.config import ServerConfig
from reward_server.outcomes import Note, NoteKind
from reward_server.planning import Planned, Split, plan_tasks, split_of
from reward_server.registry import REGISTRY, Batch, BatchResult
from reward_server.scoring import Scorer
from reward_server.server import make_executor, warm_up
from reward_server.worker import PartResult

keys_strategy = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(
            st.one_of(st.none(), st.just([]), st.lists(st.sampled_from("abcd"), min_size=n, max_size=n)),
            min_size=1,
            max_size=5,
        ),
        st.lists(st.floats(1, 5000), min_size=n, max_size=n),
    )
)


def rows_of(task: Planned, job: int, n: int) -> list[int]:
    if job not in task.parts:
        return []
    rows = task.parts[job]
    return list(range(n)) if rows is None else rows


@settings(max_examples=300, deadline=None)
@given(keys_units=keys_strategy, n_tasks=st.integers(1, 6), rate=st.floats(0.01, 10))
def test_every_row_of_every_job_is_scored_exactly_once(keys_units, n_tasks, rate):
    keys, units = keys_units
    planned = plan_tasks(keys, [rate * (j + 1) for j in range(len(keys))], units, n_tasks)
    assert 1 <= len(planned) <= n_tasks
    for job, key in enumerate(keys):
        per_task = [rows_of(task, job, len(units)) for task in planned]
        assert Counter(i for rows in per_task for i in rows) == Counter(range(len(units))), f"job {job}"
        if key:  # a grouped job: each group's rows sit in one task
            for group in set(key):
                assert sum(any(key[i] == group for i in rows) for rows in per_task) == 1


def test_work_is_spread_when_it_is_large():
    # Two grouped jobs' worth of groups plus per-sample work, four workers: every worker gets a share.
    keys = [None, None, [i // 8 for i in range(128)]]
    planned = plan_tasks(keys, [1.0, 1.0, 4.0], [2000.0] * 128, 4)
    loads = [t.load for t in planned]
    assert len(planned) == 4 and max(loads) < 1.15 * min(loads)


def test_split_kinds_follow_the_registry():
    correctness = REGISTRY.get("xml_correctness")
    assert split_of(correctness, correctness.defaults()) == Split("sample")
    tfidf = REGISTRY.get("tfidf_similarity")
    assert split_of(tfidf, tfidf.validate_params({"reference_field": "question"})) == Split("group", "question")
    assert split_of(tfidf, tfidf.defaults()) == Split("group", "answer")


def test_merge_puts_scores_and_notes_back_at_request_indices():
    reward = REGISTRY.get("xml_integer")
    jobs = [Job(reward, reward.defaults(), 2.0)]
    planned = [Planned({0: [3, 1]}), Planned({0: [0, 2]})]
    done = [
        [PartResult(BatchResult([0.5, math.nan], {1: Note("over budget", NoteKind.TIME_LIMIT)}), 1.0)],
        [PartResult(BatchResult([0.0, 0.5]), 2.0)],
    ]
    scorer = Scorer(REGISTRY, executor=None)  # type: ignore[arg-type] - merging runs nothing
    (outcome,) = scorer._merge(jobs, planned, done, [10.0] * 4, 4)
    assert outcome.scores[0] == 0.0 and outcome.scores[2] == 0.5 and outcome.scores[3] == 0.5
    assert math.isnan(outcome.scores[1]) and outcome.notes == {1: Note("over budget", NoteKind.TIME_LIMIT)}
    assert (outcome.elapsed_ms, outcome.weight) == (3.0, 2.0)
    assert outcome.counts == {"scored": 3, "not_applicable": 0, "reward_error": 0, "time_limit": 1, "unavailable": 0}


@pytest.fixture(scope="module")
def pool():
    executor = make_executor(ServerConfig(workers=2))
    asyncio.run(warm_up(executor, 2))
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def in_process(name: str, params: dict, completions: list[str], fields: list[dict]) -> list[float]:
    reward = REGISTRY.get(name)
    merged = reward.validate_params(params)
    columns = {p.name: [f[str(merged[p.name])] for f in fields] for p in reward.params if p.is_field}
    return reward.score_batch(Batch(completions, columns), **merged).scores


def test_a_split_request_scores_like_the_whole_batch_in_process(pool):
    from bench.workload import SEED_REWARDS, make_batch

    batch = make_batch(prompts=24, per_prompt=8, size=1200)
    fields = [{**f, "question": f"Frage {i % 5}"} for i, f in enumerate(batch.fields())]
    calls = [RewardCall(name) for name in SEED_REWARDS]
    # The same batch reward twice, grouped by different fields: only one can follow the task split.
    calls.append(RewardCall("tfidf_similarity", 0.5, {"reference_field": "question", "language": "none"}))
    scorer = Scorer(REGISTRY, pool)
    before = scorer.tasks_run
    outcomes, totals = asyncio.run(scorer.score(Samples(batch.completions, fields), calls))
    assert scorer.tasks_run - before > 1, "the request was not split, so this test checks nothing"
    for call, outcome in zip(calls, outcomes, strict=True):
        assert outcome.scores == in_process(call.name, dict(call.params), batch.completions, fields), call.name
        assert outcome.elapsed_ms > 0
    weights = [1.0] * len(SEED_REWARDS) + [0.5]
    expected = [math.fsum(w * o.scores[i] for w, o in zip(weights, outcomes, strict=True)) for i in range(len(batch))]
    assert totals == expected
