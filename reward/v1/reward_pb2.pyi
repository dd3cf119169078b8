from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NoteKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTE_KIND_UNSPECIFIED: _ClassVar[NoteKind]
    NOTE_KIND_NOT_APPLICABLE: _ClassVar[NoteKind]
    NOTE_KIND_REWARD_ERROR: _ClassVar[NoteKind]
    NOTE_KIND_TIME_LIMIT: _ClassVar[NoteKind]
    NOTE_KIND_UNAVAILABLE: _ClassVar[NoteKind]

class ParamType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAM_TYPE_UNSPECIFIED: _ClassVar[ParamType]
    PARAM_TYPE_STRING: _ClassVar[ParamType]
    PARAM_TYPE_NUMBER: _ClassVar[ParamType]
    PARAM_TYPE_BOOL: _ClassVar[ParamType]
    PARAM_TYPE_INTEGER: _ClassVar[ParamType]
    PARAM_TYPE_STRING_LIST: _ClassVar[ParamType]
NOTE_KIND_UNSPECIFIED: NoteKind
NOTE_KIND_NOT_APPLICABLE: NoteKind
NOTE_KIND_REWARD_ERROR: NoteKind
NOTE_KIND_TIME_LIMIT: NoteKind
NOTE_KIND_UNAVAILABLE: NoteKind
PARAM_TYPE_UNSPECIFIED: ParamType
PARAM_TYPE_STRING: ParamType
PARAM_TYPE_NUMBER: ParamType
PARAM_TYPE_BOOL: ParamType
PARAM_TYPE_INTEGER: ParamType
PARAM_TYPE_STRING_LIST: ParamType

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class TokenIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("prompt", "completion", "fields", "prompt_text", "typed_fields", "completion_ids")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TypedFieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    TYPED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_IDS_FIELD_NUMBER: _ClassVar[int]
    prompt: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    completion: str
    fields: _containers.ScalarMap[str, str]
    prompt_text: str
    typed_fields: _containers.MessageMap[str, _struct_pb2.Value]
    completion_ids: TokenIds
    def __init__(self, prompt: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., completion: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., prompt_text: _Optional[str] = ..., typed_fields: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., completion_ids: _Optional[_Union[TokenIds, _Mapping]] = ...) -> None: ...

class RewardSpec(_message.Message):
    __slots__ = ("name", "weight", "params")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    params: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("samples", "rewards", "request_id")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    rewards: _containers.RepeatedCompositeFieldContainer[RewardSpec]
    request_id: str
    def __init__(self, samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., rewards: _Optional[_Iterable[_Union[RewardSpec, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ScoreNote(_message.Message):
    __slots__ = ("sample_index", "reason", "kind")
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    sample_index: int
    reason: str
    kind: NoteKind
    def __init__(self, sample_index: _Optional[int] = ..., reason: _Optional[str] = ..., kind: _Optional[_Union[NoteKind, str]] = ...) -> None: ...

class OutcomeCounts(_message.Message):
    __slots__ = ("scored", "not_applicable", "reward_error", "time_limit", "unavailable")
    SCORED_FIELD_NUMBER: _ClassVar[int]
    NOT_APPLICABLE_FIELD_NUMBER: _ClassVar[int]
    REWARD_ERROR_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    scored: int
    not_applicable: int
    reward_error: int
    time_limit: int
    unavailable: int
    def __init__(self, scored: _Optional[int] = ..., not_applicable: _Optional[int] = ..., reward_error: _Optional[int] = ..., time_limit: _Optional[int] = ..., unavailable: _Optional[int] = ...) -> None: ...

class RewardScores(_message.Message):
    __slots__ = ("name", "scores", "weight", "notes", "elapsed_ms", "extra_columns", "counts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    scores: _containers.RepeatedScalarFieldContainer[float]
    weight: float
    notes: _containers.RepeatedCompositeFieldContainer[ScoreNote]
    elapsed_ms: float
    extra_columns: _containers.RepeatedCompositeFieldContainer[ExtraColumn]
    counts: OutcomeCounts
    def __init__(self, name: _Optional[str] = ..., scores: _Optional[_Iterable[float]] = ..., weight: _Optional[float] = ..., notes: _Optional[_Iterable[_Union[ScoreNote, _Mapping]]] = ..., elapsed_ms: _Optional[float] = ..., extra_columns: _Optional[_Iterable[_Union[ExtraColumn, _Mapping]]] = ..., counts: _Optional[_Union[OutcomeCounts, _Mapping]] = ...) -> None: ...

class ExtraColumn(_message.Message):
    __slots__ = ("name", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("results", "total", "request_id", "server_version", "elapsed_ms", "catalogue_version")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    CATALOGUE_VERSION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RewardScores]
    total: _containers.RepeatedScalarFieldContainer[float]
    request_id: str
    server_version: str
    elapsed_ms: float
    catalogue_version: str
    def __init__(self, results: _Optional[_Iterable[_Union[RewardScores, _Mapping]]] = ..., total: _Optional[_Iterable[float]] = ..., request_id: _Optional[str] = ..., server_version: _Optional[str] = ..., elapsed_ms: _Optional[float] = ..., catalogue_version: _Optional[str] = ...) -> None: ...

class ListRewardsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRewardsResponse(_message.Message):
    __slots__ = ("rewards", "server_version", "catalogue_version")
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOGUE_VERSION_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedCompositeFieldContainer[RewardInfo]
    server_version: str
    catalogue_version: str
    def __init__(self, rewards: _Optional[_Iterable[_Union[RewardInfo, _Mapping]]] = ..., server_version: _Optional[str] = ..., catalogue_version: _Optional[str] = ...) -> None: ...

class ParamInfo(_message.Message):
    __slots__ = ("name", "type", "default_value", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ParamType
    default_value: _struct_pb2.Value
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ParamType, str]] = ..., default_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...

class RewardInfo(_message.Message):
    __slots__ = ("name", "aliases", "description", "fields", "params", "requires_model", "model_id", "device", "available", "unavailable_reason", "source", "code_version", "reads_completion_ids", "model_revision", "dtype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    READS_COMPLETION_IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    description: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    params: _containers.RepeatedCompositeFieldContainer[ParamInfo]
    requires_model: bool
    model_id: str
    device: str
    available: bool
    unavailable_reason: str
    source: str
    code_version: str
    reads_completion_ids: bool
    model_revision: str
    dtype: str
    def __init__(self, name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., params: _Optional[_Iterable[_Union[ParamInfo, _Mapping]]] = ..., requires_model: _Optional[bool] = ..., model_id: _Optional[str] = ..., device: _Optional[str] = ..., available: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ..., source: _Optional[str] = ..., code_version: _Optional[str] = ..., reads_completion_ids: _Optional[bool] = ..., model_revision: _Optional[str] = ..., dtype: _Optional[str] = ...) -> None: ...
