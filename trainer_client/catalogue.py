"""The reward catalogue as ListRewards describes it: plain dataclasses, and the param checks made against it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from reward.v1 import reward_pb2 as pb

#: ``ParamType`` as the names ``ParamInfo.type`` uses (and README/preflight messages show).
TYPE_NAMES = {
    pb.PARAM_TYPE_STRING: "string",
    pb.PARAM_TYPE_NUMBER: "number",
    pb.PARAM_TYPE_BOOL: "bool",
    pb.PARAM_TYPE_INTEGER: "integer",
    pb.PARAM_TYPE_STRING_LIST: "string_list",
}


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a reward, as ListRewards describes it."""

    name: str
    #: "string", "number", "bool", "integer" or "string_list" ("unspecified" for a type this client does not know).
    type: str
    default: Any
    description: str

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has this param's type (the server checks again on every call).

        Example:
            >>> p = ParamInfo("n", "integer", 3, "")
            >>> p.accepts(4), p.accepts(4.5), p.accepts(True)
            (True, False, False)
            >>> ParamInfo("delims", "string_list", [], "").accepts(["</think>"])
            True
        """
        if self.type == "string":
            return isinstance(value, str)
        if self.type == "bool":
            return isinstance(value, bool)
        if self.type == "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        if self.type == "integer":
            whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            return whole and not isinstance(value, bool)
        if self.type == "string_list":
            return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        return True  # a type newer than this client: the server decides


@dataclass(frozen=True)
class RewardInfo:
    """One reward of the server's catalogue."""

    name: str
    aliases: list[str]
    description: str
    #: Sample fields the reward reads with default params (a ``*_field`` param renames them).
    fields: list[str]
    params: list[ParamInfo]
    requires_model: bool
    model_id: str
    device: str
    available: bool
    unavailable_reason: str
    #: Where the code comes from: "built-in", a plugin module name or a file path ("" from older servers).
    source: str = ""
    #: A content hash of the reward's code.
    code_version: str = ""
    #: True when requests naming this reward must send ``completion_ids``.
    reads_completion_ids: bool = False
    #: For model-backed rewards: the model's revision or content hash, and its dtype.
    model_revision: str = ""
    dtype: str = ""

    def fields_read(self, params: Mapping[str, Any] | None = None) -> list[str]:
        """The fields read with ``params``: defaults, with ``*_field`` params applied.

        Example:
            >>> info = RewardInfo("r", [], "", ["answer"], [ParamInfo("reference_field", "string", "answer", "")],
            ...                   False, "", "", True, "")
            >>> info.fields_read({"reference_field": "solution"})
            ['solution']
        """
        params = params or {}
        return [
            str(params.get(p.name, p.default)) for p in self.params if p.name.endswith("_field") and p.type == "string"
        ]


@dataclass(frozen=True)
class Catalogue:
    """A ListRewards answer: the rewards and the versions that identify exactly which code scores."""

    rewards: list[RewardInfo]
    server_version: str
    #: Changes whenever any reward's code changes (a plugin reload); "" from servers older than it.
    catalogue_version: str

    def find(self, name: str) -> RewardInfo | None:
        """The entry for a name or alias, None when the server has no such reward."""
        return next((r for r in self.rewards if name == r.name or name in r.aliases), None)


def _value(v: struct_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "list_value":
        return [_value(item) for item in v.list_value.values]
    if kind == "struct_value":
        return {k: _value(item) for k, item in v.struct_value.fields.items()}
    return None if kind in (None, "null_value") else getattr(v, kind)


def param_info(p: pb.ParamInfo) -> ParamInfo:
    value = _value(p.default_value)
    if p.type == pb.PARAM_TYPE_INTEGER and isinstance(value, float) and value.is_integer():
        value = int(value)
    return ParamInfo(p.name, TYPE_NAMES.get(p.type, "unspecified"), value, p.description)


def reward_info(info: pb.RewardInfo) -> RewardInfo:
    """A ``RewardInfo`` message as a plain dataclass."""
    return RewardInfo(
        name=info.name,
        aliases=list(info.aliases),
        description=info.description,
        fields=list(info.fields),
        params=[param_info(p) for p in info.params],
        requires_model=info.requires_model,
        model_id=info.model_id,
        device=info.device,
        available=info.available,
        unavailable_reason=info.unavailable_reason,
        source=info.source,
        code_version=info.code_version,
        reads_completion_ids=info.reads_completion_ids,
        model_revision=info.model_revision,
        dtype=info.dtype,
    )


def catalogue(response: pb.ListRewardsResponse) -> Catalogue:
    """A ``ListRewardsResponse`` as a :class:`Catalogue`."""
    return Catalogue([reward_info(r) for r in response.rewards], response.server_version, response.catalogue_version)


def readers_of_ids(rewards: Sequence[str], known: Catalogue) -> list[str]:
    """The requested names whose reward reads ``completion_ids`` (unknown names are left to the server's error).

    Example:
        >>> cat = Catalogue([RewardInfo("cos", ["c"], "", [], [], False, "", "", True, "", reads_completion_ids=True)],
        ...                 "1", "v")
        >>> readers_of_ids(["c", "other"], cat)
        ['c']
    """
    return [name for name in rewards if (info := known.find(name)) is not None and info.reads_completion_ids]
