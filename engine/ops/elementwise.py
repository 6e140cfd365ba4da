"""Elementwise ops: arithmetic, unary math, comparisons and logic, with their VJPs.

Forwards broadcast as PyTorch does (``broadcast_shape`` gives PyTorch's error text); the
backward pass sums broadcast dimensions away, so rules here ignore broadcasting.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from engine import dtypes
from engine.backend import xp_of
from engine.dtypes import NDARRAY
from engine.errors import InvalidArgument
from engine.ops.registry import BOTH, FLOAT, INPUTS, KEEP, OUTPUT, Primitive, primitive


def _xp(*args: Any) -> Any:
    for a in args:
        if hasattr(a, "shape"):
            return xp_of(a)
    raise AssertionError("no array among the arguments")


def _kind(value: Any) -> str:
    """The dtype kind of an array ("b", "i", "u", "f"), or "" for a Python scalar."""
    dtype = getattr(value, "dtype", None)
    return dtype.kind if dtype is not None else ""


def broadcast_shape(a: Any, b: Any) -> None:
    """Raise PyTorch's error when the shapes of ``a`` and ``b`` do not broadcast."""
    sa = getattr(a, "shape", ())
    sb = getattr(b, "shape", ())
    if sa == sb or not sa or not sb:
        return
    for i in range(1, min(len(sa), len(sb)) + 1):
        x, y = sa[-i], sb[-i]
        if x != y and x != 1 and y != 1:
            dim = max(len(sa), len(sb)) - i
            raise InvalidArgument(
                f"The size of tensor a ({x}) must match the size of tensor b ({y}) at "
                f"non-singleton dimension {dim}"
            )


def _binary(a: Any, b: Any) -> None:
    broadcast_shape(a, b)


# A Python number among an op's operands has no gradient, so rules skip computing one
# (PyTorch's ``needs_input_grad``); on large arrays that saves whole passes over memory. Rules
# test ``isinstance(b, _NUMBERS)`` inline: a helper call cost more than the test.
_NUMBERS = (int, float)
_sin, _cos = numpy.sin, numpy.cos  # see dtypes.NDARRAY: globals load faster


# ----- arithmetic -----


@primitive("add", public=False, node="AddBackward0", elementwise=True, ufunc="add")
def add(a: Any, b: Any) -> Any:
    _binary(a, b)
    return a + b


@add.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return g, g


def refuse_bool_subtraction(a: Any, b: Any) -> None:
    """PyTorch refuses bools on either side of a subtraction (Python's True and False too)."""
    a_bool = isinstance(a, bool) or _kind(a) == "b"
    b_bool = isinstance(b, bool) or _kind(b) == "b"
    if a_bool and b_bool:
        raise InvalidArgument(
            "Subtraction, the `-` operator, with two bool tensors is not supported. Use the "
            "`^` or `logical_xor()` operator instead."
        )
    if a_bool or b_bool:
        raise InvalidArgument(
            "Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
            "trying to invert a mask, use the `~` or `logical_not()` operator instead."
        )


@primitive("sub", public=False, node="SubBackward0", elementwise=True, ufunc="subtract")
def sub(a: Any, b: Any) -> Any:
    _binary(a, b)
    refuse_bool_subtraction(a, b)
    return a - b


@sub.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return g, None if isinstance(b, _NUMBERS) else -g


@primitive("rsub", public=False, node="RsubBackward1", elementwise=True)
def rsub(a: Any, b: Any) -> Any:
    """``b - a`` (PyTorch's reflected subtraction, ``1 - a``)."""
    _binary(a, b)
    refuse_bool_subtraction(a, b)
    return b - a


@rsub.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return -g, g


@primitive(
    "mul",
    public=False,
    node="MulBackward0",
    saves=INPUTS,
    elementwise=True,
    ufunc="multiply",
    needs=((1,), (0,)),
)
def mul(a: Any, b: Any) -> Any:
    _binary(a, b)
    return a * b


@mul.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    if isinstance(b, _NUMBERS):
        return g * dtypes.constant(b, g), None
    return g * b, g * a


@primitive(
    "div",
    public=False,
    node="DivBackward0",
    saves=INPUTS,
    dtype=FLOAT,
    elementwise=True,
    ufunc="divide",
    needs=((1,), (0, 1)),
)
def div(a: Any, b: Any) -> Any:
    _binary(a, b)
    return a / b


@div.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    if isinstance(b, _NUMBERS):
        return g / dtypes.constant(b, g), None
    return g / b, -g * a / (b * b)


@primitive("floor_divide", node="NotImplemented", elementwise=True)
def floor_divide(a: Any, b: Any) -> Any:
    _binary(a, b)
    if getattr(a, "dtype", None) is not None and a.dtype.kind in "iub" and not _nonzero(b):
        raise InvalidArgument("ZeroDivisionError")
    return a // b


@floor_divide.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    # PyTorch records the op (its result requires grad) under a node that refuses backward.
    raise InvalidArgument("derivative for aten::floor_divide is not implemented")


def _nonzero(b: Any) -> bool:
    return bool(_xp(b).all(b != 0)) if hasattr(b, "shape") else b != 0


@primitive("neg", node="NegBackward0", elementwise=True)
def neg(x: Any) -> Any:
    if x.dtype.kind == "b":
        raise InvalidArgument(
            "Negation, the `-` operator, on a bool tensor is not supported. If you are trying "
            "to invert a mask, use the `~` or `logical_not()` operator instead."
        )
    return -x


@neg.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (-g,)


@primitive("reciprocal", node="ReciprocalBackward0", saves=OUTPUT, dtype=FLOAT, elementwise=True)
def reciprocal(x: Any) -> Any:
    return 1 / x


@reciprocal.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (-g * out * out,)


def _check_int_pow(a: Any, b: Any) -> None:
    a_int = getattr(a, "dtype", None) is not None and a.dtype.kind in "iu"
    if not a_int:
        return
    negative = (
        b < 0
        if isinstance(b, int) and not isinstance(b, bool)
        else (hasattr(b, "dtype") and b.dtype.kind in "iu" and bool(_xp(b).any(b < 0)))
    )
    if negative:
        raise InvalidArgument("Integers to negative integer powers are not allowed.")


@primitive("pow_scalar", public=False, node="PowBackward0", saves=INPUTS, elementwise=True)
def pow_scalar(x: Any, exponent: Any) -> Any:
    """``x ** exponent`` with a Python number as the exponent."""
    _check_int_pow(x, exponent)
    return x**exponent


@pow_scalar.defvjp
def _(g: Any, out: Any, x: Any, exponent: Any) -> tuple[Any, ...]:
    if exponent == 0:
        return g * 0, None
    return g * exponent * x ** (exponent - 1), None


@primitive("pow", public=False, node="PowBackward1", saves=BOTH, elementwise=True)
def pow(a: Any, b: Any) -> Any:
    """``a ** b`` with two tensors."""
    _binary(a, b)
    _check_int_pow(a, b)
    return a**b


@pow.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    # d/db a**b = a**b log a, taken as 0 where a == 0 and b >= 0 (as PyTorch does).
    # d/da is taken as 0 where b == 0, even at a == 0 (PyTorch's pow_backward_self).
    safe = where((a == 0) & (b >= 0), 0, out * log(where(a == 0, 1, a)))
    return g * where(b == 0, 0, b * a ** (b - 1)), g * safe


@primitive("rpow", public=False, node="PowBackward2", saves=BOTH, elementwise=True)
def rpow(x: Any, base: Any) -> Any:
    """``base ** x`` with a Python number as the base."""
    return base**x


@rpow.defvjp
def _(g: Any, out: Any, x: Any, base: Any) -> tuple[Any, ...]:
    if base == 0:  # 0 ** x: 0 where x >= 0, else inf * log(0) (PyTorch's pow_backward_exponent)
        return g * where(x >= 0, 0, out * -math.inf), None
    return g * out * (math.log(base) if base > 0 else math.nan), None


# ----- unary math -----


@primitive("exp", node="ExpBackward0", saves=OUTPUT, dtype=FLOAT, elementwise=True, ufunc="exp")
def exp(x: Any) -> Any:
    return _xp(x).exp(x)


@exp.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g * out,)


@primitive("log", node="LogBackward0", saves=INPUTS, dtype=FLOAT, elementwise=True, ufunc="log")
def log(x: Any) -> Any:
    return _xp(x).log(x)


@log.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g / x,)


@primitive("sqrt", node="SqrtBackward0", saves=OUTPUT, dtype=FLOAT, elementwise=True, ufunc="sqrt")
def sqrt(x: Any) -> Any:
    return _xp(x).sqrt(x)


@sqrt.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g / (2 * out),)


@primitive("abs", node="AbsBackward0", saves=INPUTS, elementwise=True, ufunc="absolute")
def abs(x: Any) -> Any:
    if x.dtype.kind == "b":
        raise InvalidArgument(
            f"\"abs_cpu\" not implemented for '{dtypes.legacy_name(x.dtype)}'",
            torch_type="NotImplementedError",
        )
    return _xp(x).abs(x)


@abs.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g * sign(x),)


@primitive("sign", node="SignBackward0", elementwise=True, ufunc="sign")
def sign(x: Any) -> Any:
    if x.dtype.kind == "b":  # NumPy has no sign of bools; PyTorch's is the identity
        return x.copy()
    return _xp(x).sign(x)


@primitive("round", node="RoundBackward0", elementwise=True)
def round(x: Any) -> Any:
    return _xp(x).round(x)


@primitive("floor", node="FloorBackward0", elementwise=True, ufunc="floor")
def floor(x: Any) -> Any:
    return _xp(x).floor(x)


@primitive("ceil", node="CeilBackward0", elementwise=True, ufunc="ceil")
def ceil(x: Any) -> Any:
    return _xp(x).ceil(x)


def _zero_rule(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g * 0,)


for _step in (sign, round, floor, ceil):
    _step.defvjp(_zero_rule)


@primitive("sin", node="SinBackward0", saves=INPUTS, dtype=FLOAT, elementwise=True, ufunc="sin")
def sin(x: Any) -> Any:
    return _xp(x).sin(x)


@sin.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g * (_cos(x) if type(x) is NDARRAY else cos(x)),)


@primitive("cos", node="CosBackward0", saves=INPUTS, dtype=FLOAT, elementwise=True, ufunc="cos")
def cos(x: Any) -> Any:
    return _xp(x).cos(x)


@cos.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (-g * (_sin(x) if type(x) is NDARRAY else sin(x)),)


@primitive("tan", node="TanBackward0", saves=OUTPUT, dtype=FLOAT, elementwise=True, ufunc="tan")
def tan(x: Any) -> Any:
    return _xp(x).tan(x)


@tan.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g * (1 + out * out),)


@primitive("tanh", node="TanhBackward0", saves=OUTPUT, dtype=FLOAT, elementwise=True, ufunc="tanh")
def tanh(x: Any) -> Any:
    return _xp(x).tanh(x)


@tanh.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g * (dtypes.constant(1, out) - out * out),)


@primitive("sigmoid", node="SigmoidBackward0", saves=OUTPUT, dtype=FLOAT, elementwise=True)
def sigmoid(x: Any) -> Any:
    xp = _xp(x)
    # exp of -|x| never overflows: the two branches of the logistic function.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@sigmoid.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g * out * (1 - out),)


@primitive("relu", node="ReluBackward0", saves=OUTPUT, elementwise=True)
def relu(x: Any) -> Any:
    if x.dtype == bool:
        raise InvalidArgument("Boolean inputs not supported for relu")
    return _xp(x).maximum(x, 0).astype(x.dtype, copy=False)


@relu.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (threshold_backward(g, out),)


@primitive("threshold_backward", node="ThresholdBackwardBackward0", saves=INPUTS, public=False)
def threshold_backward(g: Any, out: Any) -> Any:
    """``g`` where ``out > 0``: relu's rule as an op, so that under create_graph the
    gradient depends on ``out`` (with derivative zero) as PyTorch's does."""
    return g * (out > 0)


@threshold_backward.defvjp
def _(gg: Any, out: Any, g: Any, relu_out: Any) -> tuple[Any, ...]:
    return threshold_backward(gg, relu_out), gg * 0


@primitive("maximum", node="MaximumBackward0", saves=INPUTS, elementwise=True, ufunc="maximum")
def maximum(a: Any, b: Any) -> Any:
    _binary(a, b)
    return _xp(a, b).maximum(a, b)


@maximum.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    half = (a == b) * g * 0.5  # ties split the gradient evenly
    return (a > b) * g + half, (b > a) * g + half


@primitive("minimum", node="MinimumBackward0", saves=INPUTS, elementwise=True, ufunc="minimum")
def minimum(a: Any, b: Any) -> Any:
    _binary(a, b)
    return _xp(a, b).minimum(a, b)


@minimum.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    half = (a == b) * g * 0.5
    return (a < b) * g + half, (b < a) * g + half


@primitive("clamp", node="ClampBackward1", saves=INPUTS, dtype=KEEP, elementwise=True)
def clamp(x: Any, min: Any = None, max: Any = None) -> Any:
    if min is None and max is None:
        raise InvalidArgument("torch.clamp: At least one of 'min' or 'max' must not be None")
    # The bounds take part in type promotion: an integer tensor clamped to 0.5 is float32.
    bounds = [b for b in (min, max) if b is not None]
    result = dtypes.result_type([(x.dtype, x.ndim), *bounds])
    xp = _xp(x)
    out = x
    if min is not None:
        out = xp.maximum(out, min)
    if max is not None:
        out = xp.minimum(out, max)
    return out.astype(result, copy=False)


@clamp.defvjp
def _(g: Any, out: Any, x: Any, min: Any = None, max: Any = None) -> tuple[Any, ...]:
    inside = g
    if min is not None:
        inside = inside * (x >= min)
    if max is not None:
        inside = inside * (x <= max)
    return (inside,)


@primitive("where", node="WhereBackward0", saves=INPUTS, dtype=KEEP, elementwise=True)
def where(condition: Any, a: Any, b: Any) -> Any:
    if _kind(condition) == "u" and condition.dtype.itemsize == 1:
        condition = condition.astype(bool)  # PyTorch accepts uint8 masks (with a deprecation)
    if _kind(condition) != "b":
        raise InvalidArgument(
            "where expected condition to be a boolean tensor, but got a tensor with dtype "
            + dtypes.legacy_name(condition.dtype)
        )
    broadcast_shape(condition, a)
    broadcast_shape(condition, b)
    broadcast_shape(a, b)
    result = dtypes.result_type([(v.dtype, v.ndim) if hasattr(v, "dtype") else v for v in (a, b)])
    return _xp(condition, a, b).where(condition, a, b).astype(result, copy=False)


@where.defvjp
def _(g: Any, out: Any, condition: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return None, where(condition, g, 0), where(condition, 0, g)


# ----- dtype and copies -----


@primitive("to_dtype", node="ToCopyBackward0", dtype=KEEP)
def to_dtype(x: Any, dtype: str) -> Any:
    return x.astype(dtype)


@to_dtype.defvjp
def _(g: Any, out: Any, x: Any, dtype: str) -> tuple[Any, ...]:
    return (g,)  # the backward pass casts to the input's dtype


@primitive("clone", node="CloneBackward0", dtype=KEEP)
def clone(x: Any) -> Any:
    return x.copy()


@clone.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g,)


# ----- comparisons and logic: bool results, no gradient -----


def _comparison(name: str, fn_name: str) -> Primitive:
    def forward(a: Any, b: Any) -> Any:
        _binary(a, b)
        return getattr(_xp(a, b), fn_name)(a, b)

    forward.__name__ = name
    return primitive(
        name, node=f"{name.capitalize()}Backward0", differentiable=False, elementwise=True
    )(forward)


eq = _comparison("eq", "equal")
ne = _comparison("ne", "not_equal")
lt = _comparison("lt", "less")
le = _comparison("le", "less_equal")
gt = _comparison("gt", "greater")
ge = _comparison("ge", "greater_equal")


@primitive(
    "logical_and", node="LogicalAndBackward0", dtype=KEEP, differentiable=False, elementwise=True
)
def logical_and(a: Any, b: Any) -> Any:
    _binary(a, b)
    return _xp(a, b).logical_and(a, b)


@primitive(
    "logical_or", node="LogicalOrBackward0", dtype=KEEP, differentiable=False, elementwise=True
)
def logical_or(a: Any, b: Any) -> Any:
    _binary(a, b)
    return _xp(a, b).logical_or(a, b)


@primitive(
    "logical_xor", node="LogicalXorBackward0", dtype=KEEP, differentiable=False, elementwise=True
)
def logical_xor(a: Any, b: Any) -> Any:
    _binary(a, b)
    return _xp(a, b).logical_xor(a, b)


@primitive(
    "logical_not", node="LogicalNotBackward0", dtype=KEEP, differentiable=False, elementwise=True
)
def logical_not(x: Any) -> Any:
    return _xp(x).logical_not(x)


# ----- in-place writes (the forward computes the new value; apply_inplace stores it) -----


@primitive("zero", node="ZeroBackward0", dtype=KEEP, public=False)
def zero(x: Any) -> Any:
    return _xp(x).zeros_like(x)


@zero.defvjp
def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    return (g * 0,)


@primitive("copy", node="CopyBackwards", dtype=KEEP, public=False)
def copy(x: Any, src: Any) -> Any:
    broadcast_shape(x, src)
    return _xp(x).broadcast_to(src, x.shape).astype(x.dtype)


@copy.defvjp
def _(g: Any, out: Any, x: Any, src: Any) -> tuple[Any, ...]:
    return g * 0, g


@primitive("put", node="CopySlices", dtype=KEEP, public=False)
def put(x: Any, value: Any, key: tuple[Any, ...]) -> Any:
    from engine.ops.shape import expand

    out = x.copy()
    if hasattr(value, "shape"):  # PyTorch expands the value to the indexed part, with its text
        target = out[key].shape
        while value.ndim > len(target) and value.shape[0] == 1:
            value = value[0]
        value = expand(value, shape=target)
    out[key] = value
    return out


@put.defvjp
def _(g: Any, out: Any, x: Any, value: Any, key: tuple[Any, ...]) -> tuple[Any, ...]:
    from engine.ops.index import getitem, index_backward
    from engine.ops.shape import reshape

    part = getitem(g, key=key)
    rest = g - index_backward(part, shape=tuple(g.shape), key=key)
    extra = len(getattr(value, "shape", ())) - part.ndim
    if extra > 0:  # the value's leading 1s, which the forward dropped
        part = reshape(part, shape=(1,) * extra + tuple(part.shape))
    return rest, part
