"""Input lines of ``reward-score``: one JSON object per line, checked and turned into a sample to send.

A line is ``{"prompt", "completion", "fields": {...}, "completion_ids": [...], "id": ...}``, or a flat TRL-style
row (``{"prompt", "completion", "solution": ...}``) whose other top-level keys are fields, as TRL reads dataset
columns. Both may mix: a key given both ways is refused, so no value silently wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from trainer_client.convert import json_object, to_sample
from trainer_client.errors import InputError

#: Top-level keys with a meaning of their own; every other key of a line is a field.
RESERVED = ("prompt", "completion", "fields", "completion_ids", "id")


@dataclass
class Line:
    """One valid input line, ready to send."""

    number: int
    sample: dict[str, Any]
    id: Any = None

    @property
    def shape(self) -> str:
        """ "chat" for chat turns, else "text" (a plain or absent prompt): lines of one shape share a call.

        Example:
            >>> Line(1, {"prompt": [{"role": "user", "content": "q"}]}).shape, Line(2, {"prompt": None}).shape
            ('chat', 'text')
        """
        prompt = self.sample.get("prompt")
        return "chat" if isinstance(prompt, list) and prompt else "text"


def line_fields(number: int, record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a line: its ``fields`` object plus every top-level key that is not :data:`RESERVED`.

    Example:
        >>> line_fields(1, {"prompt": "2+2?", "completion": "4", "solution": "4", "fields": {"n": 4}})
        {'solution': '4', 'n': 4}
    """
    nested = record.get("fields") or {}
    if not isinstance(nested, Mapping):
        raise InputError(f"line {number}: 'fields' must be an object of column → value, got {type(nested).__name__}")
    flat = {key: value for key, value in record.items() if key not in RESERVED}
    both = sorted(set(flat) & set(nested))
    if both:
        raise InputError(f"line {number}: {both[0]!r} is both a top-level key and in 'fields'; give it once")
    return {**flat, **nested}


def parse_line(
    number: int, text: str, needed: Mapping[str, str] | Sequence[str], id_readers: Sequence[str] = ()
) -> Line:
    """Check one JSONL line and turn it into a :class:`Line`; raises InputError naming the line.

    ``needed``: fields the rewards read (field → the reward that reads it); ``id_readers``: the rewards that read
    ``completion_ids`` (if any, the line must carry them).

    Example:
        >>> line = parse_line(3, '{"prompt": "2+2?", "completion": "4", "solution": "4"}', {"solution": "accuracy"})
        >>> line.number, line.sample["fields"]
        (3, {'solution': '4'})
        >>> parse_line(4, '{"completion": "4"}', {"solution": "accuracy"})
        Traceback (most recent call last):
        ...
        trainer_client.errors.InputError: line 4: no field 'solution', which reward 'accuracy' reads; the line has []
    """
    record = json_object(text, f"line {number}")
    fields = line_fields(number, record)
    sample = {"prompt": record.get("prompt"), "completion": record.get("completion"), "fields": fields}
    if "completion" not in record:
        sample.pop("completion")
    if record.get("completion_ids") is not None:
        sample["completion_ids"] = record["completion_ids"]
    try:
        to_sample(sample, number)  # the same checks the client makes before sending
    except InputError as exc:
        raise InputError(f"line {number}: {str(exc).split(': ', 1)[-1]}") from None
    readers = needed if isinstance(needed, Mapping) else dict.fromkeys(needed, "")
    missing = [f for f in readers if f not in fields]
    if missing:
        by = f"reward {readers[missing[0]]!r}" if readers[missing[0]] else "the rewards"
        raise InputError(f"line {number}: no field {missing[0]!r}, which {by} reads; the line has {sorted(fields)}")
    if id_readers and record.get("completion_ids") is None:
        raise InputError(f"line {number}: no 'completion_ids', which reward {id_readers[0]!r} reads")
    return Line(number, sample, record.get("id"))


def read_lines(
    handle: IO[str],
    needed: Mapping[str, str] | Sequence[str],
    report: Callable[[str], None],
    id_readers: Sequence[str] = (),
) -> Iterator[Line]:
    """Valid lines of ``handle``; bad ones go to ``report`` (with their number) and are skipped."""
    for number, text in enumerate(handle, 1):
        if not text.strip():
            continue
        try:
            yield parse_line(number, text, needed, id_readers)
        except InputError as exc:
            report(str(exc))


def batches(lines: Iterable[Line], size: int) -> Iterator[list[Line]]:
    """``lines`` in lists of ``size`` (the last one shorter)."""
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
