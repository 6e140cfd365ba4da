from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
    DTYPE_BOOL: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_INT16: _ClassVar[DType]
    DTYPE_INT8: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_INT64: DType
DTYPE_BOOL: DType
DTYPE_INT32: DType
DTYPE_INT16: DType
DTYPE_INT8: DType
DTYPE_UINT8: DType
DTYPE_FLOAT16: DType

class TensorData(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TensorRef(_message.Message):
    __slots__ = ("name", "grad")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRAD_FIELD_NUMBER: _ClassVar[int]
    name: str
    grad: bool
    def __init__(self, name: _Optional[str] = ..., grad: _Optional[bool] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("tensor", "number", "integer", "boolean", "list", "text", "none", "map")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorRef
    number: float
    integer: int
    boolean: bool
    list: ValueList
    text: str
    none: _struct_pb2.NullValue
    map: ValueMap
    def __init__(self, tensor: _Optional[_Union[TensorRef, _Mapping]] = ..., number: _Optional[float] = ..., integer: _Optional[int] = ..., boolean: _Optional[bool] = ..., list: _Optional[_Union[ValueList, _Mapping]] = ..., text: _Optional[str] = ..., none: _Optional[_Union[_struct_pb2.NullValue, str]] = ..., map: _Optional[_Union[ValueMap, _Mapping]] = ...) -> None: ...

class ValueList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, items: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class ValueMap(_message.Message):
    __slots__ = ("items",)
    class ItemsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.MessageMap[str, Value]
    def __init__(self, items: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class CreateTensor(_message.Message):
    __slots__ = ("name", "factory", "args", "data", "dtype", "requires_grad")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FACTORY_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    name: str
    factory: str
    args: _containers.RepeatedCompositeFieldContainer[Value]
    data: TensorData
    dtype: DType
    requires_grad: bool
    def __init__(self, name: _Optional[str] = ..., factory: _Optional[str] = ..., args: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., data: _Optional[_Union[TensorData, _Mapping]] = ..., dtype: _Optional[_Union[DType, str]] = ..., requires_grad: _Optional[bool] = ...) -> None: ...

class ApplyOp(_message.Message):
    __slots__ = ("op", "inputs", "attrs", "name", "names", "no_grad")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    OP_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    NO_GRAD_FIELD_NUMBER: _ClassVar[int]
    op: str
    inputs: _containers.RepeatedCompositeFieldContainer[Value]
    attrs: _containers.MessageMap[str, Value]
    name: str
    names: _containers.RepeatedScalarFieldContainer[str]
    no_grad: bool
    def __init__(self, op: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., attrs: _Optional[_Mapping[str, Value]] = ..., name: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., no_grad: _Optional[bool] = ...) -> None: ...

class Backward(_message.Message):
    __slots__ = ("tensor", "gradient", "retain_graph", "create_graph", "inputs")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    RETAIN_GRAPH_FIELD_NUMBER: _ClassVar[int]
    CREATE_GRAPH_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorRef
    gradient: TensorRef
    retain_graph: bool
    create_graph: bool
    inputs: _containers.RepeatedCompositeFieldContainer[TensorRef]
    def __init__(self, tensor: _Optional[_Union[TensorRef, _Mapping]] = ..., gradient: _Optional[_Union[TensorRef, _Mapping]] = ..., retain_graph: _Optional[bool] = ..., create_graph: _Optional[bool] = ..., inputs: _Optional[_Iterable[_Union[TensorRef, _Mapping]]] = ...) -> None: ...

class Grad(_message.Message):
    __slots__ = ("outputs", "inputs", "grad_outputs", "retain_graph", "create_graph", "allow_unused", "names")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    GRAD_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RETAIN_GRAPH_FIELD_NUMBER: _ClassVar[int]
    CREATE_GRAPH_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNUSED_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorRef]
    inputs: _containers.RepeatedCompositeFieldContainer[TensorRef]
    grad_outputs: _containers.RepeatedCompositeFieldContainer[TensorRef]
    retain_graph: bool
    create_graph: bool
    allow_unused: bool
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, outputs: _Optional[_Iterable[_Union[TensorRef, _Mapping]]] = ..., inputs: _Optional[_Iterable[_Union[TensorRef, _Mapping]]] = ..., grad_outputs: _Optional[_Iterable[_Union[TensorRef, _Mapping]]] = ..., retain_graph: _Optional[bool] = ..., create_graph: _Optional[bool] = ..., allow_unused: _Optional[bool] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class Detach(_message.Message):
    __slots__ = ("tensor", "name")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorRef
    name: str
    def __init__(self, tensor: _Optional[_Union[TensorRef, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class ZeroGrad(_message.Message):
    __slots__ = ("tensors", "set_to_none")
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    SET_TO_NONE_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorRef]
    set_to_none: bool
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorRef, _Mapping]]] = ..., set_to_none: _Optional[bool] = ...) -> None: ...

class RequiresGrad(_message.Message):
    __slots__ = ("tensor", "requires_grad")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorRef
    requires_grad: bool
    def __init__(self, tensor: _Optional[_Union[TensorRef, _Mapping]] = ..., requires_grad: _Optional[bool] = ...) -> None: ...

class RetainGrad(_message.Message):
    __slots__ = ("tensor",)
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorRef
    def __init__(self, tensor: _Optional[_Union[TensorRef, _Mapping]] = ...) -> None: ...

class GetTensor(_message.Message):
    __slots__ = ("tensor", "value", "grad", "repr")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    GRAD_FIELD_NUMBER: _ClassVar[int]
    REPR_FIELD_NUMBER: _ClassVar[int]
    tensor: TensorRef
    value: bool
    grad: bool
    repr: bool
    def __init__(self, tensor: _Optional[_Union[TensorRef, _Mapping]] = ..., value: _Optional[bool] = ..., grad: _Optional[bool] = ..., repr: _Optional[bool] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("create", "op", "backward", "grad", "detach", "zero_grad", "requires_grad", "retain_grad", "get", "release")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_FIELD_NUMBER: _ClassVar[int]
    GRAD_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    ZERO_GRAD_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    RETAIN_GRAD_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    create: CreateTensor
    op: ApplyOp
    backward: Backward
    grad: Grad
    detach: Detach
    zero_grad: ZeroGrad
    requires_grad: RequiresGrad
    retain_grad: RetainGrad
    get: GetTensor
    release: Release
    def __init__(self, create: _Optional[_Union[CreateTensor, _Mapping]] = ..., op: _Optional[_Union[ApplyOp, _Mapping]] = ..., backward: _Optional[_Union[Backward, _Mapping]] = ..., grad: _Optional[_Union[Grad, _Mapping]] = ..., detach: _Optional[_Union[Detach, _Mapping]] = ..., zero_grad: _Optional[_Union[ZeroGrad, _Mapping]] = ..., requires_grad: _Optional[_Union[RequiresGrad, _Mapping]] = ..., retain_grad: _Optional[_Union[RetainGrad, _Mapping]] = ..., get: _Optional[_Union[GetTensor, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("name", "shape", "dtype", "requires_grad", "is_leaf", "grad_fn", "has_grad", "value", "grad", "repr", "absent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    IS_LEAF_FIELD_NUMBER: _ClassVar[int]
    GRAD_FN_FIELD_NUMBER: _ClassVar[int]
    HAS_GRAD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    GRAD_FIELD_NUMBER: _ClassVar[int]
    REPR_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    requires_grad: bool
    is_leaf: bool
    grad_fn: str
    has_grad: bool
    value: TensorData
    grad: TensorData
    repr: str
    absent: bool
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., requires_grad: _Optional[bool] = ..., is_leaf: _Optional[bool] = ..., grad_fn: _Optional[str] = ..., has_grad: _Optional[bool] = ..., value: _Optional[_Union[TensorData, _Mapping]] = ..., grad: _Optional[_Union[TensorData, _Mapping]] = ..., repr: _Optional[str] = ..., absent: _Optional[bool] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("kind", "tensors")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    tensors: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    def __init__(self, kind: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "status", "detail", "command_index", "torch_type")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    COMMAND_INDEX_FIELD_NUMBER: _ClassVar[int]
    TORCH_TYPE_FIELD_NUMBER: _ClassVar[int]
    code: str
    status: int
    detail: str
    command_index: int
    torch_type: str
    def __init__(self, code: _Optional[str] = ..., status: _Optional[int] = ..., detail: _Optional[str] = ..., command_index: _Optional[int] = ..., torch_type: _Optional[str] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("device", "seed", "ttl_seconds")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    device: str
    seed: int
    ttl_seconds: float
    def __init__(self, device: _Optional[str] = ..., seed: _Optional[int] = ..., ttl_seconds: _Optional[float] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("id", "token", "device", "seed", "ttl_seconds", "tensors", "bytes_held")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    BYTES_HELD_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: str
    device: str
    seed: int
    ttl_seconds: float
    tensors: int
    bytes_held: int
    def __init__(self, id: _Optional[str] = ..., token: _Optional[str] = ..., device: _Optional[str] = ..., seed: _Optional[int] = ..., ttl_seconds: _Optional[float] = ..., tensors: _Optional[int] = ..., bytes_held: _Optional[int] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateTensorRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: CreateTensor
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[CreateTensor, _Mapping]] = ...) -> None: ...

class ApplyOpRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: ApplyOp
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[ApplyOp, _Mapping]] = ...) -> None: ...

class BackwardRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: Backward
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[Backward, _Mapping]] = ...) -> None: ...

class GradRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: Grad
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[Grad, _Mapping]] = ...) -> None: ...

class DetachRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: Detach
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[Detach, _Mapping]] = ...) -> None: ...

class ZeroGradRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: ZeroGrad
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[ZeroGrad, _Mapping]] = ...) -> None: ...

class SetRequiresGradRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: RequiresGrad
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[RequiresGrad, _Mapping]] = ...) -> None: ...

class RetainGradRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: RetainGrad
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[RetainGrad, _Mapping]] = ...) -> None: ...

class GetTensorRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: GetTensor
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[GetTensor, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("session_id", "command")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: Release
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("session_id", "commands")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    def __init__(self, session_id: _Optional[str] = ..., commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("results", "error")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CommandResult]
    error: Error
    def __init__(self, results: _Optional[_Iterable[_Union[CommandResult, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...
