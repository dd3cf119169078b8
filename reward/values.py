"""Plain Python values ↔ ``google.protobuf.Value``, and a value's text form: shared by server and client.

Dataset columns travel with their JSON types (``Sample.typed_fields``). Rewards that read text see
:func:`value_text` of a value, which is also what older clients sent in ``Sample.fields``; so a
column scores the same whichever map it came in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2

#: Largest integer a double holds exactly: integral numbers up to it come back as ``int``.
_EXACT = 2**53


def value_text(value: Any) -> str:
    """A column value as text: strings as they are, numbers in decimal, None as "", lists and dicts as JSON.

    Example:
        >>> [value_text(v) for v in ("42", 42, 0.5, None, True, {"a": [1]})]
        ['42', '42', '0.5', '', 'True', '{"a": [1]}']
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def to_value(value: Any, where: str = "value") -> struct_pb2.Value:
    """A JSON-like Python value as a ``Value``; raises TypeError naming ``where`` for anything else.

    Example:
        >>> to_value({"test_cases": [1, "a"]}).struct_value.fields["test_cases"].list_value.values[1].string_value
        'a'
    """
    out = struct_pb2.Value()
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int | float):
        out.number_value = float(value)
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, Mapping):
        out.struct_value.SetInParent()  # an empty object stays an object, not null
        for key, item in value.items():
            out.struct_value.fields[str(key)].CopyFrom(to_value(item, f"{where}[{key!r}]"))
    elif isinstance(value, Sequence | set | frozenset) and not isinstance(value, bytes | bytearray):
        out.list_value.values.extend(to_value(item, f"{where}[{i}]") for i, item in enumerate(value))
    else:
        raise TypeError(f"{where}: {type(value).__name__} is not a JSON value (string, number, bool, list, object)")
    return out


def from_value(value: struct_pb2.Value) -> Any:
    """A ``Value`` as a plain Python value; whole numbers come back as ``int`` (JSON has one number type).

    Example:
        >>> sorted(from_value(to_value({"n": 42, "x": 0.5, "ok": True, "none": None, "l": ["a"]})).items())
        [('l', ['a']), ('n', 42), ('none', None), ('ok', True), ('x', 0.5)]
        >>> from_value(to_value([{}, []]))
        [{}, []]
    """
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        number = value.number_value
        if math.isfinite(number) and number.is_integer() and abs(number) <= _EXACT:
            return int(number)
        return number
    if kind == "struct_value":
        return {k: from_value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [from_value(v) for v in value.list_value.values]
    return getattr(value, kind)
