"""What the server is told about one LLM judge: a ``judges:`` entry of the config file, checked at start-up.

Plain data: the config loader builds these (:meth:`JudgeSpec.from_mapping`), so an unknown key, a template
that does not parse or an unusable choice table stops the server before it listens, with a line naming the
judge (exit code 2). Only parsing a template imports jinja2 (the ``server`` extra).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: How a choice judge turns the first token's probabilities into a score (a request may pick the other).
SCORE_MODES = ("expected", "argmax")
#: OpenAI's (and vLLM's default) largest ``top_logprobs``.
MAX_TOP_LOGPROBS = 20
#: Names the judge fills in itself; a sample field of the same name is hidden behind them.
RESERVED = ("prompt", "completion", "criterion")
#: A judge's name is a reward name: callers type it in their reward lists.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
#: The default number pattern of a number judge: the first (signed, decimal) number in the answer.
NUMBER_PATTERN = r"-?\d+(?:\.\d+)?"


class JudgeConfigError(ValueError):
    """A ``judges:`` entry the server cannot use; the message starts with ``judges.NAME``."""


@dataclass(frozen=True)
class NumberScale:
    """Number mode: ``pattern`` finds a number in the free-text answer; ``low..high`` maps onto 0..1."""

    low: float
    high: float
    pattern: str = NUMBER_PATTERN

    def score(self, answer: str) -> float:
        """The first number of ``answer`` on the 0..1 scale; ValueError (with the answer) when there is none.

        Example:
            >>> NumberScale(1, 10).score("I rate it 7/10.")
            0.6666666666666666
            >>> NumberScale(1, 10).score("great!")
            Traceback (most recent call last):
            ...
            ValueError: no number in the answer 'great!'
        """
        match = re.search(self.pattern, answer)
        if match is None:
            raise ValueError(f"no number in the answer {answer[:200]!r}")
        text = match.group(1) if match.groups() else match.group(0)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} in the answer {answer[:200]!r} is not a number") from None
        if not self.low <= value <= self.high:
            raise ValueError(f"{value:g} in the answer {answer[:200]!r} is outside {self.low:g}..{self.high:g}")
        return (value - self.low) / (self.high - self.low)


@dataclass(frozen=True)
class Criterion:
    """One question put to the judge per sample: its template, how its answer scores, and its weight."""

    name: str
    template: str
    #: Label → value (choice mode), or None with :attr:`number` set (number mode).
    choices: Mapping[str, float] | None = None
    number: NumberScale | None = None
    weight: float = 1.0
    #: The text the template sees as ``criterion`` (a rubric sharing one template).
    text: str = ""


@dataclass(frozen=True)
class JudgeSpec:
    """One LLM judge, served as the reward called :attr:`name` (see README: LLM judges).

    Example:
        >>> spec = JudgeSpec.from_mapping("tone", {"endpoint": "http://127.0.0.1:8000/v1/", "model": "tiny",
        ...     "template": "Is {{ completion }} polite? A or B", "choices": {"A": 1, "B": 0}})
        >>> spec.endpoint, spec.criteria[0].choices, spec.fields
        ('http://127.0.0.1:8000/v1', {'A': 1.0, 'B': 0.0}, ())
        >>> JudgeSpec.from_mapping("tone", {"endpoint": "http://x/v1", "model": "m", "tempalte": "x"})
        Traceback (most recent call last):
        ...
        reward_server.judges.spec.JudgeConfigError: judges.tone: unknown key 'tempalte' (did you mean 'template'?)
    """

    name: str
    endpoint: str
    model: str
    criteria: tuple[Criterion, ...]
    api_key_env: str = ""
    system: str = ""
    score: str = "expected"
    max_tokens: int = 16
    top_logprobs: int = MAX_TOP_LOGPROBS
    max_concurrency: int = 16
    timeout_s: float = 30.0
    retries: int = 2
    #: Send vLLM's ``structured_outputs`` (choice mode); off for endpoints that refuse unknown request keys.
    structured_outputs: bool = True
    #: The template variable holding the whole conversation (chat turns; a plain prompt is one user turn).
    conversation_variable: str = "conversation"
    #: Sample fields the templates use: every request must carry them.
    fields: tuple[str, ...] = field(default=())

    @property
    def is_rubric(self) -> bool:
        return len(self.criteria) > 1 or self.criteria[0].name != self.name

    @property
    def has_choices(self) -> bool:
        return any(c.choices is not None for c in self.criteria)

    @property
    def public_endpoint(self) -> str:
        """The endpoint without credentials (user info, query): what ListRewards and notes show."""
        return public_url(self.endpoint)

    @property
    def mode(self) -> str:
        """How the judge scores, in words (ListRewards' description)."""
        parts = []
        for c in self.criteria:
            if c.choices is not None:
                how = "choices " + ", ".join(f"{k}={v:g}" for k, v in c.choices.items())
            else:
                assert c.number is not None
                how = f"number {c.number.low:g}..{c.number.high:g}"
            parts.append(f"{c.name} (weight {c.weight:g}): {how}" if self.is_rubric else how)
        kind = f"rubric of {len(self.criteria)} criteria, weighted mean: " if self.is_rubric else ""
        score = f"; score {self.score}" if self.has_choices else ""
        return kind + "; ".join(parts) + score

    @classmethod
    def from_mapping(cls, name: str, mapping: Any) -> JudgeSpec:
        """One ``judges:`` entry; every error names ``judges.NAME`` and the key."""
        where = f"judges.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise JudgeConfigError(f"{where}: a judge's name must be letters, digits, '_', '.', '-' (not first)")
        entry = _mapping(where, mapping, _KEYS)
        for key in ("endpoint", "model"):
            if key not in entry:
                raise JudgeConfigError(f"{where}: needs {key!r}")
        endpoint = _text(where, "endpoint", entry["endpoint"]).rstrip("/")
        if urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).netloc:
            raise JudgeConfigError(f"{where}.endpoint must be an http(s) base URL such as http://host:8000/v1")
        values: dict[str, Any] = {"endpoint": endpoint, "model": _text(where, "model", entry["model"])}
        for key, kind in _SCALARS.items():
            if key in entry:
                values[key] = _scalar(f"{where}.{key}", entry[key], kind)
        shared = Criterion(name, entry.get("template", ""), *_scoring(where, entry, required="rubric" not in entry))
        if "rubric" in entry:
            criteria = _rubric(where, entry["rubric"], shared)
        else:
            if not shared.template:
                raise JudgeConfigError(f"{where}: needs 'template' (or a 'rubric' whose criteria have one)")
            criteria = (shared,)
        spec = cls(name=name, criteria=criteria, **values)
        _check(where, spec)
        used = set()
        for criterion in criteria:
            used |= template_variables(f"{where} ({criterion.name})" if spec.is_rubric else where, criterion.template)
        hidden = {*RESERVED, spec.conversation_variable}
        return dataclasses.replace(spec, fields=tuple(sorted(used - hidden)))


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment (where credentials may hide).

    Example:
        >>> public_url("https://user:secret@api.example/v1?key=abc")
        'https://api.example/v1'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def template_variables(where: str, source: str) -> set[str]:
    """The variables a template reads; JudgeConfigError naming ``where`` when it does not parse."""
    from jinja2 import TemplateSyntaxError, meta

    from reward_server.judges.templates import ENVIRONMENT

    # Compiling (not only parsing) is what finds an unknown filter or test; TemplateAssertionError is a
    # TemplateSyntaxError, so both end here as one line naming the judge.
    try:
        parsed = ENVIRONMENT.parse(source)
        ENVIRONMENT.compile(parsed)
        variables = set(meta.find_undeclared_variables(parsed))
    except TemplateSyntaxError as exc:
        raise JudgeConfigError(f"{where}: the template does not parse (line {exc.lineno}): {exc.message}") from None
    return variables - set(ENVIRONMENT.globals)


_KEYS = (
    "endpoint",
    "model",
    "api_key_env",
    "system",
    "template",
    "choices",
    "number",
    "score",
    "max_tokens",
    "top_logprobs",
    "max_concurrency",
    "timeout_s",
    "retries",
    "structured_outputs",
    "conversation_variable",
    "rubric",
)
_SCALARS: dict[str, type] = {
    "api_key_env": str,
    "system": str,
    "score": str,
    "max_tokens": int,
    "top_logprobs": int,
    "max_concurrency": int,
    "timeout_s": float,
    "retries": int,
    "structured_outputs": bool,
    "conversation_variable": str,
}
_CRITERION_KEYS = ("name", "criterion", "template", "choices", "number", "weight")


def _mapping(where: str, value: Any, known: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise JudgeConfigError(f"{where} must be a mapping ({', '.join(known[:3])}, ...), got {value!r}")
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"
            raise JudgeConfigError(f"{where}: unknown key {key!r}{hint}")
    return value


def _text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise JudgeConfigError(f"{where}.{key} must be a non-empty string, got {value!r}")
    return value


def _scalar(where: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise JudgeConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def _choices(where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise JudgeConfigError(f"{where}.choices must be a non-empty mapping of label -> value, got {value!r}")
    out = {}
    for label, number in value.items():
        if not isinstance(label, str) or not label:
            raise JudgeConfigError(f"{where}.choices: label {label!r} must be non-empty text (quote it in YAML)")
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise JudgeConfigError(f"{where}.choices[{label!r}] must be a finite number, got {number!r}")
        out[label] = float(number)
    return out


def _number(where: str, value: Any) -> NumberScale:
    entry = _mapping(f"{where}.number", value, ("range", "pattern"))
    bounds = entry.get("range")
    if (
        not isinstance(bounds, list | tuple)
        or len(bounds) != 2
        or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        or not bounds[0] < bounds[1]
    ):
        raise JudgeConfigError(f"{where}.number.range must be [low, high] with low < high, got {bounds!r}")
    pattern = entry.get("pattern", NUMBER_PATTERN)
    try:
        re.compile(_text(f"{where}.number", "pattern", pattern))
    except re.error as exc:
        raise JudgeConfigError(f"{where}.number.pattern does not compile: {exc}") from None
    return NumberScale(float(bounds[0]), float(bounds[1]), pattern)


def _scoring(where: str, entry: Mapping[str, Any], required: bool) -> tuple[dict | None, NumberScale | None]:
    """(choices, number) of an entry: exactly one of them when ``required``, at most one otherwise."""
    if "choices" in entry and "number" in entry:
        raise JudgeConfigError(f"{where}: give 'choices' or 'number', not both")
    if "choices" in entry:
        return _choices(where, entry["choices"]), None
    if "number" in entry:
        return None, _number(where, entry["number"])
    if required:
        raise JudgeConfigError(f"{where}: needs 'choices' (label -> value) or 'number' (range: [low, high])")
    return None, None


def _rubric(where: str, value: Any, shared: Criterion) -> tuple[Criterion, ...]:
    if not isinstance(value, list) or not value:
        raise JudgeConfigError(f"{where}.rubric must be a non-empty list of criteria, got {value!r}")
    criteria = []
    for i, item in enumerate(value):
        at = f"{where}.rubric[{i}]"
        entry = _mapping(at, item, _CRITERION_KEYS)
        name = _text(at, "name", entry.get("name"))
        choices, number = _scoring(at, entry, required=False)
        if choices is None and number is None:
            choices, number = shared.choices, shared.number
            if choices is None and number is None:
                raise JudgeConfigError(f"{at}: needs 'choices' or 'number' (its own, or the judge's)")
        weight = _scalar(f"{at}.weight", entry.get("weight", 1.0), float)
        if not (math.isfinite(weight) and weight > 0):
            raise JudgeConfigError(f"{at}.weight must be > 0, got {weight}")
        template = entry.get("template", shared.template)
        if not template:
            raise JudgeConfigError(f"{at}: needs 'template' (its own, or the judge's)")
        text = entry.get("criterion", "")
        criteria.append(Criterion(name, _text(at, "template", template), choices, number, weight, str(text)))
    names = [c.name for c in criteria]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise JudgeConfigError(f"{where}.rubric: criterion {', '.join(twice)} given twice")
    return tuple(criteria)


def _check(where: str, spec: JudgeSpec) -> None:
    if spec.score not in SCORE_MODES:
        raise JudgeConfigError(f"{where}.score must be one of {', '.join(SCORE_MODES)}, got {spec.score!r}")
    for key, least in (("max_tokens", 1), ("max_concurrency", 1), ("retries", 0)):
        if getattr(spec, key) < least:
            raise JudgeConfigError(f"{where}.{key} must be at least {least}, got {getattr(spec, key)}")
    if not (math.isfinite(spec.timeout_s) and spec.timeout_s > 0):
        raise JudgeConfigError(f"{where}.timeout_s must be > 0, got {spec.timeout_s}")
    labels = max((len(c.choices) for c in spec.criteria if c.choices is not None), default=0)
    if not labels <= spec.top_logprobs <= MAX_TOP_LOGPROBS:
        raise JudgeConfigError(
            f"{where}.top_logprobs must be between the number of labels ({labels}) and {MAX_TOP_LOGPROBS}, "
            f"got {spec.top_logprobs}"
        )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", spec.conversation_variable):
        raise JudgeConfigError(f"{where}.conversation_variable must be a template variable name")
    if spec.conversation_variable in RESERVED:
        raise JudgeConfigError(
            f"{where}.conversation_variable {spec.conversation_variable!r} would hide the template variable of that"
            f" name; choose another (reserved: {', '.join(RESERVED)})"
        )
    if spec.api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", spec.api_key_env):
        raise JudgeConfigError(
            f"{where}.api_key_env must name an environment variable (the key itself never goes in the config)"
        )
