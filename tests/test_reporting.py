"""The server's failure lines (issue 18 §2): one WARNING per reward, reason and origin per window, and the repeats
held back in between folded into a count on the next line. A fake clock stands in for the minute-long window."""

from __future__ import annotations

import logging
import math

import pytest

from reward_server import reporting
from reward_server.calls import RewardOutcome
from reward_server.outcomes import Note, NoteKind

BUG = Note("broken raised TypeError: nope", NoteKind.REWARD_ERROR, "/plugins/mine.py:7")


def outcome(n: int, note: Note = BUG) -> RewardOutcome:
    return RewardOutcome("broken", 1.0, [math.nan] * n, dict.fromkeys(range(n), note), 1.0)


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(reporting, "_limiter", reporting.RepeatLimiter(60.0, clock=lambda: now[0]))
    return now


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reward_server.outcomes"]


def test_repeats_are_folded_into_a_count_on_the_next_line(clock, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="reward_server.outcomes"):
        reporting.report_outcomes([outcome(3)], 3, "r1")
        clock[0] += 10
        reporting.report_outcomes([outcome(2)], 2, "r2")  # within the window: held back
        clock[0] += 10
        reporting.report_outcomes([outcome(4)], 4, "r3")  # held back
        clock[0] += 60
        reporting.report_outcomes([outcome(1)], 1, "r4")  # the window has passed: logged, with the count
    assert lines(caplog) == [
        "reward broken: reward error on 3 sample(s), first samples[0] (request_id=r1): "
        "broken raised TypeError: nope at /plugins/mine.py:7",
        "reward broken: reward error on 1 sample(s), first samples[0] (request_id=r4): "
        "broken raised TypeError: nope at /plugins/mine.py:7 (and 6 more like it since the last such line)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "reward_server.outcomes")


def test_another_reason_is_its_own_line_and_time_limits_are_info(clock, caplog) -> None:
    slow = Note("broken timed out after 1 s", NoteKind.TIME_LIMIT)
    not_applicable = Note("nothing to judge", NoteKind.NOT_APPLICABLE)
    mixed = RewardOutcome("broken", 1.0, [math.nan] * 3, {0: BUG, 1: slow, 2: not_applicable}, 1.0)
    with caplog.at_level(logging.INFO, logger="reward_server.outcomes"):
        reporting.report_outcomes([mixed], 3, "r")
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "reward_server.outcomes"]
    assert [level for level, _ in records] == [logging.WARNING, logging.INFO]  # not applicable is silent
    assert "first samples[1]" in records[1][1] and "timed out" in records[1][1]
