"""Request and response bodies, parallel to gradient.v1's messages: same names, same fields.

The session id moves from the request messages into the path, and a tensor reference is the
command vocabulary's JSON form (``"x"``, or ``{"grad_of": "x"}`` for ``x.grad``) rather than
the proto's ``TensorRef``. Request bodies are strict (no coercion of ``"1"`` to ``1``, no
unknown fields); the engine then validates each command as it does for every frontend.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from service.dataplane import SessionInfo


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# References, op inputs and tensor data are checked by the engine's command parser, which names
# what it expected; the models only give their JSON schema (a pydantic union would report a
# failure once per member type).
_REF: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "description": "A tensor's name."},
        {
            "type": "object",
            "properties": {"grad_of": {"type": "string"}},
            "required": ["grad_of"],
            "additionalProperties": False,
            "description": "The .grad of the named tensor.",
        },
    ]
}
_SCALARS: list[dict[str, Any]] = [{"type": "boolean"}, {"type": "integer"}, {"type": "number"}]
_VALUE: dict[str, Any] = {
    "anyOf": [
        *_REF["anyOf"],
        *_SCALARS,
        {"type": "array", "items": {"anyOf": [*_REF["anyOf"], *_SCALARS]}},
    ],
    "description": "A tensor, a Python scalar, or a list of them (cat, stack, sizes).",
}
TensorRef = Annotated[Any, WithJsonSchema(_REF)]
Value = Annotated[Any, WithJsonSchema(_VALUE)]


class TensorData(Strict):
    """A tensor's values: flat row-major ``data`` (nested lists accepted on input; "NaN",
    "Infinity", "-Infinity" for non-finite values), or ``b64``, its little-endian bytes."""

    shape: list[int] | None = Field(None, description="Dimensions; inferred from nested data.")
    dtype: str = Field("float32", description="PyTorch's dtype name: float32, int64, bool, ...")
    data: Any = Field(None, description="The elements, flat or nested.")
    b64: str | None = Field(None, description="The elements' bytes in base64, instead of data.")


TensorDataIn = Annotated[
    Any,
    WithJsonSchema(
        {"anyOf": [TensorData.model_json_schema(), {"type": "array"}, *_SCALARS, {"type": "null"}]}
    ),
]


class Command(Strict):
    """A body that is one command of the engine's vocabulary."""

    kind: ClassVar[str]

    def command(self) -> dict[str, Any]:
        """The engine's command dict: the fields the client sent, under this ``kind``."""
        return {"kind": self.kind, **self.model_dump(exclude_unset=True)}


class CreateTensor(Command):
    """Creates a tensor from ``data``, or from a factory with ``args``."""

    kind = "create"
    name: str | None = Field(None, description="The name to bind; the server picks one if unset.")
    factory: str = Field(
        "tensor",
        description="tensor (from data), arange, zeros, ones, full, empty, eye, linspace, rand, "
        "randn, zeros_like, ones_like, full_like.",
    )
    args: list[Value] = Field([], description="The factory's positional arguments.")
    data: TensorDataIn = Field(
        None,
        description="For the tensor factory: a TensorData object, or nested lists or a number "
        "as torch.tensor takes them.",
    )
    dtype: str | None = Field(None, description="The result's dtype; unset keeps the inferred.")
    requires_grad: bool = Field(False, description="Whether the new leaf requires grad.")


class ApplyOp(Command):
    """Applies a registered op."""

    kind = "op"
    op: str = Field(description="A registered op: add, mul, matmul, sum, softmax, add_, ...")
    inputs: list[Value] = Field([], description="Positional inputs in PyTorch's order.")
    attrs: dict[str, Any] = Field({}, description="Keyword attributes such as dim and keepdim.")
    name: str | None = Field(None, description="The result's name; the server picks one if unset.")
    names: list[str] | None = Field(None, description="Names for each result of a multi-output op.")
    no_grad: bool = Field(False, description="Run without recording a graph.")


class Backward(Command):
    """A backward pass."""

    kind = "backward"
    tensor: TensorRef
    gradient: TensorRef | None = Field(None, description="Needed unless tensor has one element.")
    retain_graph: bool | None = Field(
        None, description="Keep saved buffers; create_graph if unset."
    )
    create_graph: bool = Field(False, description="Record the pass, for higher-order gradients.")
    inputs: list[TensorRef] | None = Field(None, description="Accumulate only into these.")


class Grad(Command):
    """Functional gradients, as torch.autograd.grad."""

    kind = "grad"
    outputs: list[TensorRef]
    inputs: list[TensorRef]
    grad_outputs: list[TensorRef] | None = Field(None, description="One per non-scalar output.")
    retain_graph: bool | None = Field(
        None, description="Keep saved buffers; create_graph if unset."
    )
    create_graph: bool = Field(False, description="Record the computation, for higher order.")
    allow_unused: bool = Field(False, description="Return null, not an error, for unused inputs.")
    names: list[str] | None = Field(None, description="Names for the gradients, one per input.")


class Detach(Command):
    """Binds a name to a detached alias of a tensor."""

    kind = "detach"
    tensor: TensorRef
    name: str | None = Field(None, description="The alias's name; the server picks one if unset.")


class ZeroGrad(Command):
    """Zeroes grads in place, or drops them."""

    kind = "zero_grad"
    tensors: list[TensorRef]
    set_to_none: bool = Field(False, description="Set the grads to None instead.")


class RequiresGrad(Command):
    """Sets requires_grad on a leaf."""

    kind = "requires_grad"
    tensor: TensorRef
    requires_grad: bool = True


class RetainGrad(Command):
    """Makes a non-leaf keep its grad during backward passes."""

    kind = "retain_grad"
    tensor: TensorRef


class ExecuteRequest(Strict):
    """A batch: commands as ``{"kind": ..., ...}``, run in order as one transaction."""

    commands: list[Any] = Field(
        description="Commands: create, op, backward, grad, detach, zero_grad, requires_grad, "
        "retain_grad, get, release; each the fields of its single-command body, plus kind.",
    )


class CreateSessionRequest(Strict):
    """Asks for a new session."""

    # Defaults by keyword: the route builds this model with no arguments for an empty body.
    device: str | None = Field(
        default=None, description="cpu or cuda[:N]; the server's default if unset."
    )
    seed: int = Field(default=0, ge=0, lt=1 << 64, description="Seed of the session's generator.")
    ttl_seconds: float | None = Field(
        default=None, gt=0, description="Idle seconds before expiry; the server's default if unset."
    )


class Session(BaseModel):
    """A session; the token only in the response that creates it."""

    id: str
    token: str | None = None
    device: str
    seed: int
    ttl_seconds: float
    tensors: int = Field(description="How many named tensors it holds.")
    bytes_held: int = Field(description="Bytes of tensors, grads and saved buffers it holds.")

    @classmethod
    def of(cls, info: SessionInfo) -> Session:
        return cls(
            id=info.id,
            token=info.token,
            device=info.device,
            seed=info.seed,
            ttl_seconds=info.ttl,
            tensors=info.tensors,
            bytes_held=info.bytes_held,
        )


class TensorInfo(BaseModel):
    """What a command reports about one tensor."""

    name: str = Field(description='The name ("x.grad" for a grad).')
    shape: list[int]
    dtype: str
    requires_grad: bool
    is_leaf: bool
    grad_fn: str | None = Field(description="The grad_fn node's name, null for none.")
    has_grad: bool
    value: TensorData | None = Field(None, description="Its values, when asked.")
    grad: TensorData | None = Field(None, description="Its grad's values, when asked.")
    repr: str | None = Field(None, description="PyTorch's repr, when asked.")


class CommandResult(BaseModel):
    """The result of one command."""

    kind: str
    tensors: list[TensorInfo | None] = Field(
        description="The tensors it created or read; null for a grad that Grad found unused."
    )


class ExecuteResponse(BaseModel):
    """A batch's results, one per command."""

    results: list[CommandResult]
