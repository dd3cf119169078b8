"""Test-case formats: a dataset's test column, typed, as one :class:`Problem` whatever dataset it comes from.

Three families are read (the column may be a JSON object or a JSON string holding one):

- open-r1 / PrimeIntellect (``open-r1/verifiable-coding-problems-python``): ``{"language": "python",
  "test_cases": [{"type": "stdin_stdout" | "function_call", "fn_name"?, "input", "output"}]}``;
- APPS / TACO / verl / LiveCodeBench: ``{"inputs": [...], "outputs": [...], "fn_name"?}`` (``fn_name`` makes every
  test a function call);
- code_contests: ``{"public_tests" | "private_tests" | "generated_tests": {"input": [...], "output": [...]}}``
  (all three sets are used, in that order).

A function-call test's input is its positional arguments: a JSON list, or text: in open-r1's format the JSON text of
that list (``"[[2, 7], 9]"``, as its dataset stores it), in the APPS family one JSON value per line (LiveCodeBench's
and verl's convention). Its expected output is a JSON value (or JSON text); APPS and TACO wrap it in a
one-element list, so that unwrapped value is accepted too. Function-call tests make the problem a Python problem
(only a Python program can be called): its language is "python" when the column names none, and a column naming
another language with function-call tests is refused. Anything else is refused with a :class:`FormatError`
saying what is wrong where. Pickled test data (some LiveCodeBench dumps: base64 of zlib of a pickle) is refused
and never unpickled: unpickling runs whatever code the data names.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reward_server.code.execution import TestInput
from reward_server.code.languages import find_language

_MISSING = object()


class FormatError(ValueError):
    """The test column cannot be read: the message says what is wrong, and where."""


@dataclass(frozen=True)
class TestCase:
    """One test: what the engine runs, what the program must print or return, and the raw values as written."""

    __test__ = False  # not a pytest class

    run: TestInput
    #: stdin test: the expected stdout text; function-call test: the expected JSON value.
    expected: Any
    #: Other expected values that also pass (APPS/TACO's one-element list around a return value).
    also: tuple[Any, ...] = ()
    #: The ``input`` and ``output`` as the dataset wrote them (open-r1's grader feeds these as they are).
    raw_input: Any = ""
    raw_output: Any = ""

    @property
    def is_call(self) -> bool:
        return self.run.fn_name is not None


@dataclass(frozen=True)
class Problem:
    """A problem's tests, in order, and the language it names (None when it names none)."""

    tests: tuple[TestCase, ...]
    language: str | None = None
    #: "open-r1", "apps" or "code_contests".
    format: str = ""


def parse_problem(value: Any) -> Problem:
    """Read a test column value (object or JSON text) as a :class:`Problem`; raises :class:`FormatError`.

    Example:
        >>> p = parse_problem({"language": "python", "test_cases": [
        ...     {"type": "stdin_stdout", "input": "1 2\\n", "output": "3\\n"},
        ...     {"type": "function_call", "fn_name": "add", "input": [1, 2], "output": [3]}]})
        >>> p.language, p.tests[0].run.stdin, p.tests[1].run.args, p.tests[1].expected, p.tests[1].also
        ('python', '1 2\\n', (1, 2), [3], (3,))
        >>> parse_problem('{"inputs": ["2\\\\n"], "outputs": ["4\\\\n"]}').tests[0].expected
        '4\\n'
        >>> parse_problem({"inputs": [], "outputs": []})
        Traceback (most recent call last):
        ...
        reward_server.code.formats.FormatError: no test cases
    """
    data = _as_object(value)
    if "test_cases" in data:
        problem = _open_r1(data)
    elif "inputs" in data or "outputs" in data:
        problem = _apps(data)
    elif any(key in data for key in _CONTESTS):
        problem = _code_contests(data)
    else:
        keys = ", ".join(sorted(map(str, data))[:8]) or "none"
        raise FormatError(
            f"unknown test format (keys: {keys}); expected open-r1's test_cases, APPS-style inputs/outputs "
            "or code_contests' public_tests/private_tests/generated_tests"
        )
    if not problem.tests:
        raise FormatError("no test cases")
    return _call_tests_are_python(problem)


def _call_tests_are_python(problem: Problem) -> Problem:
    """A problem with function-call tests is a Python problem: only Python programs can be called.

    APPS, TACO and LiveCodeBench give ``fn_name`` without a language: the problem is then Python, so a completion in
    another language is "no python block" (the program's failure, scored), never an engine that cannot call it.
    A problem that names another language and has function-call tests cannot be run anywhere: refused.
    """
    if not any(test.is_call for test in problem.tests):
        return problem
    if problem.language is None:
        return replace(problem, language="python")
    named = find_language(problem.language)
    if named is None or named.name != "python":
        raise FormatError(
            f"language {problem.language[:40]!r} with function_call tests: function-call tests run Python programs "
            "only (drop the language, or make the tests stdin_stdout)"
        )
    return problem


def _as_object(value: Any) -> Mapping[str, Any]:
    if isinstance(value, bytes | bytearray):
        _refuse_pickle(bytes(value), "the column")
        raise FormatError("binary test data; send a JSON object or JSON text")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise FormatError("the test column is empty")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            _refuse_pickle_text(text, "the column")
            raise FormatError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        if isinstance(value, str):  # JSON text of JSON text (a column written with json.dumps twice)
            return _as_object(value)
    if not isinstance(value, Mapping):
        raise FormatError(f"the test column must be a JSON object, got {_kind(value)}")
    return value


def _refuse_pickle_text(text: str, where: str) -> None:
    """Refuse base64 text that decodes to a pickle, or to zlib data holding one (LiveCodeBench's private tests)."""
    if len(text) < 8 or any(c.isspace() for c in text[:64]):
        return
    try:
        raw = base64.b64decode(text[: 4 * 64], validate=True)
    except (binascii.Error, ValueError):
        return
    _refuse_pickle(raw, where)


def _refuse_pickle(raw: bytes, where: str) -> None:
    head = raw[:2]
    if head[:1] == b"\x78":  # a zlib stream: look at the first bytes it holds, no more
        try:
            head = zlib.decompressobj().decompress(raw, 2)
        except zlib.error:
            return
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise FormatError(
            f"{where} holds pickled test data (as some LiveCodeBench dumps do); it is never unpickled, because "
            "unpickling runs whatever code the data names: decode it offline into JSON inputs/outputs"
        )


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        _refuse_pickle_text(value, where)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(f"{where} must be text, got {_kind(value)}")
    return str(value)  # a bare number in a JSON column stands for its text


def _call_args(value: Any, where: str, whole_list: bool = False) -> tuple[Any, ...]:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str):
        _refuse_pickle_text(value, where)
        if whole_list:  # open-r1 / PrimeIntellect: the JSON text of the argument list
            try:
                args = json.loads(value)
            except json.JSONDecodeError:
                args = None
            if isinstance(args, list):
                return tuple(args)
        try:
            return tuple(json.loads(line) for line in value.split("\n") if line.strip())
        except json.JSONDecodeError as exc:
            raise FormatError(f"{where} must be a JSON list of arguments or one JSON value per line: {exc}") from None
    raise FormatError(f"{where} must be a JSON list of arguments, got {_kind(value)}")


def _call_expected(value: Any, where: str) -> tuple[Any, tuple[Any, ...]]:
    if isinstance(value, str):
        _refuse_pickle_text(value, where)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{where} must be a JSON value: {exc}") from None
    also = (value[0],) if isinstance(value, list) and len(value) == 1 else ()
    return value, also


def _fn_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise FormatError(f"{where} must be a function name, got {value!r}"[:200])
    return value


def _stdin_case(input_: Any, output: Any, where: str) -> TestCase:
    return TestCase(
        TestInput(stdin=_text(input_, f"{where}.input")), _text(output, f"{where}.output"), (), input_, output
    )


def _call_case(fn_name: str, input_: Any, output: Any, where: str, whole_list: bool = False) -> TestCase:
    expected, also = _call_expected(output, f"{where}.output")
    args = _call_args(input_, f"{where}.input", whole_list)
    return TestCase(TestInput(fn_name=fn_name, args=args), expected, also, input_, output)


def _open_r1(data: Mapping[str, Any]) -> Problem:
    language = data.get("language")
    if language is not None and not isinstance(language, str):
        raise FormatError(f"language must be text, got {_kind(language)}")
    cases = data["test_cases"]
    if isinstance(cases, str):
        _refuse_pickle_text(cases, "test_cases")
        raise FormatError("test_cases must be a list of test objects, got text")
    if not isinstance(cases, list):
        raise FormatError(f"test_cases must be a list of test objects, got {_kind(cases)}")
    tests = []
    for k, case in enumerate(cases):
        where = f"test_cases[{k}]"
        if not isinstance(case, Mapping):
            raise FormatError(f"{where} must be an object, got {_kind(case)}")
        kind = case.get("type", "stdin_stdout")
        for key in ("input", "output"):
            if key not in case:
                raise FormatError(f"{where} has no {key!r}")
        if kind == "stdin_stdout":
            tests.append(_stdin_case(case["input"], case["output"], where))
        elif kind == "function_call":
            name = _fn_name(case.get("fn_name", data.get("fn_name")), f"{where}.fn_name")
            tests.append(_call_case(name, case["input"], case["output"], where, whole_list=True))
        else:
            raise FormatError(f"{where}.type {kind!r} is not supported (stdin_stdout or function_call)"[:200])
    return Problem(tuple(tests), language or None, "open-r1")


def _pairs(data: Mapping[str, Any], in_key: str, out_key: str, where: str) -> list[tuple[Any, Any, str]]:
    inputs, outputs = data.get(in_key, _MISSING), data.get(out_key, _MISSING)
    for key, value in ((in_key, inputs), (out_key, outputs)):
        if value is _MISSING:
            raise FormatError(f"{where} has no {key!r}")
        if isinstance(value, str):
            _refuse_pickle_text(value, f"{where}.{key}")
        if not isinstance(value, list):
            raise FormatError(f"{where}.{key} must be a list, got {_kind(value)}")
    if len(inputs) != len(outputs):
        raise FormatError(f"{where} has {len(inputs)} {in_key} but {len(outputs)} {out_key}")
    return [(i, o, f"{where}[{k}]") for k, (i, o) in enumerate(zip(inputs, outputs, strict=True))]


def _apps(data: Mapping[str, Any]) -> Problem:
    fn_name = data.get("fn_name")
    if fn_name is not None:
        fn_name = _fn_name(fn_name, "fn_name")
    tests = [
        _call_case(fn_name, i, o, where) if fn_name else _stdin_case(i, o, where)
        for i, o, where in _pairs(data, "inputs", "outputs", "inputs/outputs")
    ]
    language = data.get("language")
    return Problem(tuple(tests), language if isinstance(language, str) and language else None, "apps")


_CONTESTS = ("public_tests", "private_tests", "generated_tests")


def _code_contests(data: Mapping[str, Any]) -> Problem:
    tests = []
    for key in _CONTESTS:
        block = data.get(key)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            raise FormatError(f"{key} must be an object with input and output lists, got {_kind(block)}")
        tests.extend(_stdin_case(i, o, where) for i, o, where in _pairs(block, "input", "output", key))
    return Problem(tuple(tests), None, "code_contests")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def check_problem(value: Any) -> None:
    """Raise :class:`FormatError` when ``value`` is not a test column this module reads (a request's up-front check).

    Example:
        >>> check_problem({"test_cases": [{"type": "stdin_stdout", "input": "1"}]})
        Traceback (most recent call last):
        ...
        reward_server.code.formats.FormatError: test_cases[0] has no 'output'
    """
    parse_problem(value)
