"""Every op of the registry against torch 2.13, the oracle.

Each case is one expression written once over a torch-like namespace ``M`` (``engine`` or
``torch``), so the same lambda runs on both.  For float32 and float64 inputs drawn from a
seeded generator (or given explicitly at awkward points) the tests compare values, dtypes,
``grad_fn`` names and the gradients of every input for a random cotangent; a central
finite-difference check in float64 verifies each VJP independently of torch.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy
import pytest
import torch

import engine as E
from engine.errors import EngineError
from engine.ops.registry import OPS, PRIMITIVES

# NumPy warns on 0/0, log(0) and overflow where torch is silent; the engine filters those
# warnings at import, which pytest's per-test warning capture undoes.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FLOATS = ("float32", "float64")
TOLERANCE = {"float32": {"rtol": 2e-5, "atol": 2e-5}, "float64": {"rtol": 1e-10, "atol": 1e-12}}
INF = math.inf


# ----- helpers shared by the engine tests -----


def rng_for(name: str) -> numpy.random.Generator:
    """A generator seeded from a stable hash of ``name`` (``hash`` is salted per process)."""
    return numpy.random.default_rng(zlib.crc32(name.encode()))


def dtype_of(M: Any, name: str) -> Any:
    """``torch.float64`` or the engine's ``"float64"``."""
    return getattr(torch, name) if M is torch else name


def tensors_of(value: Any) -> list[Any]:
    """The tensors of a result: itself, or the items of a tuple (split, max(dim), ...)."""
    if isinstance(value, tuple | list):
        return [t for v in value for t in tensors_of(v)]
    return [value]


def grad_fn_name(t: torch.Tensor) -> str | None:
    return None if t.grad_fn is None else type(t.grad_fn).__name__


def engine_name(t: E.Tensor) -> str | None:
    return None if t.grad_fn is None else t.grad_fn.name


def to_numpy(t: Any) -> numpy.ndarray:
    if isinstance(t, torch.Tensor):
        if t._is_zerotensor():  # torch's lazily materialised zeros (second derivative of abs)
            return torch.zeros(t.shape, dtype=t.dtype).numpy()
        return t.detach().numpy()
    return numpy.asarray(t.detach().numpy())


def assert_same(e: E.Tensor, t: torch.Tensor, what: str, **tol: Any) -> None:
    """Same dtype, shape and values (nan where torch has nan, infinities of the same sign)."""
    assert e.dtype == str(t.dtype).removeprefix("torch."), what
    assert e.shape == tuple(t.shape), what
    numpy.testing.assert_allclose(
        to_numpy(e).astype(numpy.float64) if e.dtype != "bool" else to_numpy(e),
        to_numpy(t).astype(numpy.float64) if t.dtype != torch.bool else to_numpy(t),
        err_msg=what,
        **tol,
    )


# ----- the cases -----


@dataclass(frozen=True)
class Case:
    """``fn(M, *inputs)`` over inputs of ``shapes`` (or explicit ``values``)."""

    id: str
    fn: Callable[..., Any]
    shapes: tuple[tuple[int, ...], ...] = ()
    ops: tuple[str, ...] = ()
    domain: str | tuple[str, ...] = "real"
    values: tuple[Any, ...] | None = None
    fd: bool = True  # smooth around the sampled point: finite differences apply
    const: tuple[int, ...] = ()  # inputs that do not require grad
    backward: bool = True  # False where torch refuses backward (checked in the error tests)

    def inputs(self, dtype: str) -> list[numpy.ndarray]:
        if self.values is not None:
            return [numpy.asarray(v, dtype=dtype) for v in self.values]
        rng = rng_for(self.id)
        domains = (
            self.domain if isinstance(self.domain, tuple) else (self.domain,) * len(self.shapes)
        )
        return [_draw(rng, s, d).astype(dtype) for s, d in zip(self.shapes, domains, strict=True)]


def _draw(rng: numpy.random.Generator, shape: tuple[int, ...], domain: str) -> numpy.ndarray:
    if domain == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "nonzero":  # away from the kinks of abs, sign, division
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 2.0, shape)
    if domain == "small":  # tan, pow with a tensor exponent
        return rng.uniform(-1.0, 1.0, shape)
    if domain == "int":  # small integers: equalities and ties
        return rng.integers(-2, 3, shape).astype(numpy.float64)
    return rng.standard_normal(shape)


def C(id: str, fn: Callable[..., Any], *shapes: tuple[int, ...], **kw: Any) -> Case:
    return Case(id, fn, tuple(shapes), **kw)


def N(id: str, fn: Callable[..., Any], *shapes: tuple[int, ...], **kw: Any) -> Case:
    """A case whose outputs are not differentiable (bool, integer)."""
    return Case(id, fn, tuple(shapes), fd=False, **kw)


def V(id: str, fn: Callable[..., Any], *values: Any, **kw: Any) -> Case:
    """A case at explicit values: awkward points, where finite differences do not apply."""
    kw.setdefault("fd", False)
    return Case(id, fn, values=tuple(values), **kw)


def _setitem(M: Any, a: Any, b: Any) -> Any:
    x = a * 1
    x[1:] = b
    return x


def _setitem_row(M: Any, a: Any, b: Any) -> Any:
    x = a * 1
    x[0] = b
    return x


def _index_put(M: Any, g: Any) -> Any:
    if M is torch:
        out = torch.zeros(5, dtype=g.dtype)
        return out.index_put((torch.tensor([0, 2, 0]),), g, accumulate=True)
    return PRIMITIVES["index_backward"](g, shape=(5,), key=(numpy.array([0, 2, 0]),))


S = (2, 3)  # a small matrix
ELEMENTWISE = [
    C("add", lambda M, a, b: a + b, S, S, ops=("add",)),
    C("add-broadcast", lambda M, a, b: M.add(a, b), (3, 1), (1, 4), ops=("add",)),
    C("add-row", lambda M, a, b: a + b, (2, 3), (3,), ops=("add",)),
    C("add-0dim", lambda M, a, b: a + b, (2, 3), (), ops=("add",)),
    C("add-scalar", lambda M, a: a + 2.5, S, ops=("add",)),
    C("radd-scalar", lambda M, a: 2 + a, S, ops=("add",)),
    C("sub", lambda M, a, b: a - b, (3, 1), (4,), ops=("sub",)),
    C("sub-scalar", lambda M, a: a - 1, S, ops=("sub",)),
    C("rsub-scalar", lambda M, a: 1 - a, S, ops=("sub", "rsub")),
    C("mul", lambda M, a, b: a * b, (4, 1, 3), (2, 1), ops=("mul",)),
    C("mul-scalar", lambda M, a: M.mul(a, 3), S, ops=("mul",)),
    C("div", lambda M, a, b: a / b, S, (3,), domain=("real", "nonzero"), ops=("div",)),
    C("div-scalar", lambda M, a: a / 4, S, ops=("div",)),
    C("rdiv-scalar", lambda M, a: 2 / a, S, domain="nonzero", ops=("div", "reciprocal")),
    C("neg", lambda M, a: -a, S, ops=("neg",)),
    C("reciprocal", lambda M, a: a.reciprocal(), S, domain="nonzero", ops=("reciprocal",)),
    C("pow-scalar", lambda M, a: a**3, S, ops=("pow", "pow_scalar")),
    C("pow-neg-scalar", lambda M, a: a**-1.5, S, domain="positive", ops=("pow", "pow_scalar")),
    C("pow-half", lambda M, a: M.pow(a, 0.5), S, domain="positive", ops=("pow", "pow_scalar")),
    C("pow-zero", lambda M, a: a**0, S, ops=("pow", "pow_scalar")),
    C("pow-tensor", lambda M, a, b: a**b, S, S, domain=("positive", "small"), ops=("pow",)),
    C("pow-tensor-bcast", lambda M, a, b: a**b, (2, 1), (3,), domain=("positive", "real")),
    C("rpow", lambda M, a: 2**a, S, ops=("pow", "rpow")),
    C("rpow-float", lambda M, a: M.pow(0.5, a), S, ops=("pow", "rpow")),
    C("exp", lambda M, a: M.exp(a), S, ops=("exp",)),
    C("exp-0dim", lambda M, a: a.exp(), (), ops=("exp",)),
    C("mul-0dim-0dim", lambda M, a, b: a * b, (), (), ops=("mul",)),
    C("mul-empty", lambda M, a, b: a * b, (0, 3), (3,), ops=("mul",)),
    C("log", lambda M, a: M.log(a), S, domain="positive", ops=("log",)),
    C("sqrt", lambda M, a: M.sqrt(a), S, domain="positive", ops=("sqrt",)),
    C("abs", lambda M, a: M.abs(a), S, domain="nonzero", ops=("abs",)),
    C("sin", lambda M, a: M.sin(a), S, ops=("sin",)),
    C("cos", lambda M, a: M.cos(a), S, ops=("cos",)),
    C("tan", lambda M, a: M.tan(a), S, domain="small", ops=("tan",)),
    C("tanh", lambda M, a: M.tanh(a), S, ops=("tanh",)),
    C("sigmoid", lambda M, a: M.sigmoid(a), S, ops=("sigmoid",)),
    C("sigmoid-method", lambda M, a: (a * 30).sigmoid(), S, ops=("sigmoid",)),
    C("relu", lambda M, a: M.relu(a), S, domain="nonzero", ops=("relu",)),
    C("sign", lambda M, a: a.sign(), S, domain="nonzero", ops=("sign",)),
    C("round", lambda M, a: (a * 3).round(), S, ops=("round",)),
    C("floor", lambda M, a: a.floor(), S, ops=("floor",)),
    C("ceil", lambda M, a: a.ceil(), S, ops=("ceil",)),
    C("maximum", lambda M, a, b: M.maximum(a, b), S, (3,), ops=("maximum",)),
    C("max-binary", lambda M, a, b: M.max(a, b), S, S, ops=("max", "maximum")),
    C("minimum", lambda M, a, b: a.minimum(b), (3, 1), (4,), ops=("minimum",)),
    C("min-binary", lambda M, a, b: M.min(a, b), S, S, ops=("min", "minimum")),
    C("clamp", lambda M, a: M.clamp(a, -0.5, 0.5), (4, 5), ops=("clamp",)),
    C("clamp-min", lambda M, a: a.clamp(min=0.1), (4, 5), ops=("clamp",)),
    C("clamp-max", lambda M, a: a.clamp(max=-0.1), (4, 5), ops=("clamp",)),
    C("where", lambda M, a, b: M.where(a > 0, a, b), S, S, ops=("where", "gt")),
    C("where-bcast", lambda M, a, b: M.where(b > 0, a, b), (3, 1), (4,), ops=("where",)),
    C("where-scalar", lambda M, a: M.where(a > 0, a, 0.0), S, ops=("where",)),
    C("floordiv", lambda M, a: a // 0.7, S, ops=("floor_divide",), backward=False, fd=False),
    N("floordiv-const", lambda M, a, b: a // b, S, S, domain="nonzero", const=(0, 1)),
]

AWKWARD = [
    V("relu-at-0", lambda M, a: M.relu(a), [-1.0, 0.0, 2.0], ops=("relu",)),
    V("abs-at-0", lambda M, a: a.abs(), [-1.0, 0.0, 2.0], ops=("abs",)),
    V("sqrt-at-0", lambda M, a: a.sqrt(), [0.0, 4.0], ops=("sqrt",)),
    V("log-at-0", lambda M, a: a.log(), [0.0, 1.0], ops=("log",)),
    V("pow-half-at-0", lambda M, a: a**0.5, [0.0, 1.0], ops=("pow_scalar",)),
    V("pow-2-at-0", lambda M, a: a**2, 0.0, ops=("pow_scalar",)),
    V("pow-tensor-at-0", lambda M, a, b: a**b, [0.0, 0.0, 0.0, 2.0], [0.0, 2.0, 0.5, 0.0]),
    V("rpow-base-0", lambda M, a: 0**a, [-1.0, 0.0, 1.0, 2.0], ops=("rpow",)),
    V("clamp-bounds", lambda M, a: a.clamp(0.0, 2.0), [-1.0, 0.0, 1.0, 2.0, 3.0]),
    V("clamp-min-bound", lambda M, a: a.clamp(min=0.0), [-1.0, 0.0, 1.0]),
    V("max-ties", lambda M, a: a.max(), [1.0, 3.0, 3.0], ops=("max",)),
    V("min-ties", lambda M, a: a.min(), [2.0, 1.0, 1.0, 1.0], ops=("min",)),
    V("max-dim-ties", lambda M, a: a.max(dim=0), [1.0, 3.0, 3.0], ops=("max",)),
    V("max-dim-ties-2d", lambda M, a: a.max(dim=1), [[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]),
    V("min-dim-ties-2d", lambda M, a: a.min(dim=0), [[1.0, 3.0, 0.0], [1.0, 2.0, 0.0]]),
    V("maximum-ties", lambda M, a, b: M.maximum(a, b), [2.0, 1.0], [2.0, 5.0]),
    V("minimum-ties", lambda M, a, b: M.minimum(a, b), [2.0, 1.0], [2.0, 5.0]),
    V("norm-at-0", lambda M, a: a.norm(), [0.0, 0.0, 0.0], ops=("norm",)),
    V("norm-1-at-0", lambda M, a: a.norm(p=1), [0.0, 1.0, -2.0]),
    V("norm-inf-ties", lambda M, a: a.norm(p=INF), [3.0, -3.0, 1.0]),
    V("norm-dim-zero-row", lambda M, a: a.norm(dim=1), [[0.0, 0.0], [3.0, 4.0]]),
    V("step-functions", lambda M, a: a.round() + a.floor() + a.sign(), [0.4, 1.6]),
    V("prod-one-zero", lambda M, a: a.prod(), [2.0, 0.0, 3.0], ops=("prod",)),
    V("prod-two-zeros", lambda M, a: a.prod(), [2.0, 0.0, 0.0], ops=("prod",)),
    V("prod-dim-zero", lambda M, a: a.prod(dim=1), [[2.0, 0.0, 3.0], [1.0, 2.0, 3.0]]),
    V("sigmoid-extremes", lambda M, a: a.sigmoid(), [-100.0, 0.0, 100.0]),
    V("exp-overflow", lambda M, a: a.exp(), [1000.0, -1000.0]),
    V("softmax-large", lambda M, a: a.softmax(dim=0), [1000.0, 1000.0, -1000.0]),
    V("logsumexp-inf", lambda M, a: a.logsumexp(dim=0), [-INF, -INF], ops=("logsumexp",)),
    V("div-by-zero", lambda M, a, b: a / b, [1.0, -1.0, 0.0], [0.0, 0.0, 0.0]),
]

REDUCTIONS = [
    C("sum", lambda M, a: a.sum(), (2, 3, 4), ops=("sum",)),
    C("sum-fn", lambda M, a: M.sum(a), (3,), ops=("sum",)),
    C("sum-dim", lambda M, a: a.sum(dim=1), (2, 3, 4), ops=("sum",)),
    C("sum-dims", lambda M, a: a.sum(dim=(0, 2)), (2, 3, 4), ops=("sum",)),
    C("sum-keepdim", lambda M, a: a.sum(dim=-1, keepdim=True), (2, 3, 4), ops=("sum",)),
    C("sum-0dim", lambda M, a: a.sum(dim=0), (), ops=("sum",)),
    C("sum-positional", lambda M, a: M.sum(a, 1, True), (2, 3, 4), ops=("sum",)),
    C("sum-list-dims", lambda M, a: a.sum(dim=[2, 0]), (2, 3, 4), ops=("sum",)),
    C("sum-empty", lambda M, a: a.sum(dim=0), (0, 3), ops=("sum",)),
    C("mean-positional", lambda M, a: M.mean(a, -1), (2, 3), ops=("mean",)),
    C("mean", lambda M, a: a.mean(), (2, 3), ops=("mean",)),
    C("mean-dim", lambda M, a: M.mean(a, dim=0), (2, 3), ops=("mean",)),
    C("mean-dims-keepdim", lambda M, a: a.mean(dim=(0, -1), keepdim=True), (2, 3, 4)),
    C("prod", lambda M, a: a.prod(), (2, 3), ops=("prod",)),
    C("prod-dim", lambda M, a: M.prod(a, dim=1), (2, 3), ops=("prod",)),
    C("prod-keepdim", lambda M, a: a.prod(dim=0, keepdim=True), (2, 3), ops=("prod",)),
    C("prod-positional", lambda M, a: M.prod(a, 0), (2, 3), ops=("prod",)),
    C("prod-0dim", lambda M, a: a.prod(dim=0), (), ops=("prod",)),
    C("max", lambda M, a: a.max(), (3, 4), ops=("max",)),
    C("min", lambda M, a: M.min(a), (3, 4), ops=("min",)),
    C("max-dim", lambda M, a: a.max(dim=1), (3, 4), ops=("max",)),
    C("max-dim-keepdim", lambda M, a: M.max(a, dim=0, keepdim=True), (3, 4), ops=("max",)),
    C("max-dim-neg", lambda M, a: a.max(-1).values, (2, 3, 4), ops=("max",)),
    C("max-positional", lambda M, a: M.max(a, 1, True), (3, 4), ops=("max",)),
    C("min-dim", lambda M, a: a.min(dim=0), (3, 4), ops=("min",)),
    C("min-dim-keepdim", lambda M, a: a.min(dim=1, keepdim=True).values, (3, 4)),
    N("argmax", lambda M, a: a.argmax(), (3, 4), ops=("argmax",)),
    N("argmax-dim", lambda M, a: M.argmax(a, dim=1), (3, 4), ops=("argmax",)),
    N("argmin-keepdim", lambda M, a: a.argmin(dim=0, keepdim=True), (3, 4), ops=("argmin",)),
    N("argmax-positional", lambda M, a: M.argmax(a, 1, True), (3, 4), ops=("argmax",)),
    N("argmin-fn", lambda M, a: M.argmin(a), (3, 4), ops=("argmin",)),
    C("norm", lambda M, a: a.norm(), (3, 4), ops=("norm",)),
    C("norm-fn", lambda M, a: M.norm(a), (5,), ops=("norm",)),
    C("norm-1", lambda M, a: a.norm(p=1), (3, 4), domain="nonzero", ops=("norm",)),
    C("norm-inf", lambda M, a: a.norm(p=INF), (3, 4), ops=("norm",)),
    C("norm-3", lambda M, a: a.norm(p=3), (3, 4), ops=("norm",)),
    C("norm-dim", lambda M, a: a.norm(dim=1), (3, 4), ops=("norm",)),
    C("norm-dim-keepdim", lambda M, a: a.norm(p=3, dim=0, keepdim=True), (3, 4)),
    C("norm-inf-dim", lambda M, a: a.norm(p=INF, dim=1), (3, 4), ops=("norm",)),
    C("norm-positional", lambda M, a: M.norm(a, 3, 1), (3, 4), ops=("norm",)),
    C("norm-dims", lambda M, a: a.norm(dim=(0, 2)), (2, 3, 4), ops=("norm",)),
    C("norm-1-dim", lambda M, a: a.norm(p=1, dim=0), (3, 4), domain="nonzero"),
    C("softmax", lambda M, a: M.softmax(a, dim=1), (3, 4), ops=("softmax",)),
    C("softmax-dim0", lambda M, a: a.softmax(dim=0), (3, 4), ops=("softmax",)),
    C("softmax-3d", lambda M, a: a.softmax(-2), (2, 3, 4), ops=("softmax",)),
    C("log-softmax", lambda M, a: M.log_softmax(a, dim=1), (3, 4), ops=("log_softmax",)),
    C("log-softmax-dim0", lambda M, a: a.log_softmax(0), (3, 4), ops=("log_softmax",)),
    C("logsumexp", lambda M, a: M.logsumexp(a, dim=1), (3, 4), ops=("logsumexp",)),
    C("logsumexp-keepdim", lambda M, a: a.logsumexp(dim=0, keepdim=True), (3, 4)),
    C("logsumexp-dims", lambda M, a: a.logsumexp(dim=(0, 2)), (2, 3, 4), ops=("logsumexp",)),
    C("logsumexp-positional", lambda M, a: M.logsumexp(a, 0, True), (3, 4)),
    C("softmax-positional", lambda M, a: M.softmax(a, 0), (3, 4), ops=("softmax",)),
    C("softmax-0dim", lambda M, a: a.softmax(0), (), ops=("softmax",)),
    C("log-softmax-positional", lambda M, a: M.log_softmax(a, -1), (3, 4)),
]

PRODUCTS = [
    C("dot", lambda M, a, b: M.dot(a, b), (4,), (4,), ops=("dot",)),
    C("dot-method", lambda M, a, b: a.dot(b), (4,), (4,), ops=("dot",)),
    C("mm", lambda M, a, b: M.mm(a, b), (2, 3), (3, 4), ops=("mm",)),
    C("mv", lambda M, a, b: M.mv(a, b), (2, 3), (3,), ops=("mv",)),
    C("bmm", lambda M, a, b: M.bmm(a, b), (2, 2, 3), (2, 3, 4), ops=("bmm",)),
    C("outer", lambda M, a, b: M.outer(a, b), (3,), (4,), ops=("outer",)),
    C("matmul-1d-1d", lambda M, a, b: M.matmul(a, b), (3,), (3,), ops=("matmul",)),
    C("matmul-2d-1d", lambda M, a, b: a @ b, (2, 3), (3,), ops=("matmul",)),
    C("matmul-1d-2d", lambda M, a, b: a @ b, (3,), (3, 2), ops=("matmul",)),
    C("matmul-2d-2d", lambda M, a, b: a @ b, (2, 3), (3, 4), ops=("matmul",)),
    C("matmul-3d-3d", lambda M, a, b: a @ b, (2, 2, 3), (2, 3, 4), ops=("matmul_batched",)),
    C("matmul-3d-2d", lambda M, a, b: a @ b, (2, 3, 4), (4, 5), ops=("matmul_batched",)),
    C("matmul-2d-3d", lambda M, a, b: a @ b, (3, 4), (2, 4, 5), ops=("matmul_batched",)),
    C("matmul-3d-1d", lambda M, a, b: a @ b, (2, 3, 4), (4,), ops=("matmul_batched",)),
    C("matmul-1d-3d", lambda M, a, b: a @ b, (4,), (2, 4, 3), ops=("matmul_batched",)),
    C("matmul-broadcast", lambda M, a, b: M.matmul(a, b), (2, 1, 3, 4), (5, 4, 2)),
    C("matmul-method", lambda M, a, b: a.matmul(b), (2, 3), (3,), ops=("matmul",)),
    C("matmul-2d-3d-const-a", lambda M, a, b: a @ b, (3, 4), (2, 4, 5), const=(0,)),
    C("matmul-2d-3d-const-b", lambda M, a, b: a @ b, (3, 4), (2, 4, 5), const=(1,)),
    C("matmul-row-3d", lambda M, a, b: a @ b, (1, 4), (2, 4, 5)),
    C("matmul-2d-3d-col", lambda M, a, b: a @ b, (3, 4), (2, 4, 1)),
    C("matmul-2d-4d", lambda M, a, b: a @ b, (3, 4), (2, 1, 4, 5)),
    C("matmul-3d-2d-const", lambda M, a, b: a @ b, (2, 3, 4), (4, 5), const=(1,)),
    C("matmul-1d-3d-const", lambda M, a, b: a @ b, (4,), (2, 4, 3), const=(1,)),
]

SHAPES = [
    C("reshape", lambda M, a: a.reshape(2, 3), (6,), ops=("reshape",)),
    C("reshape-tuple", lambda M, a: a.reshape((3, -1)), (2, 3), ops=("reshape",)),
    C("reshape-transposed", lambda M, a: a.t().reshape(6), (2, 3), ops=("reshape",)),
    C("view", lambda M, a: a.view(3, 2), (2, 3), ops=("view",)),
    C("view-infer", lambda M, a: a.view(-1), (2, 3, 4), ops=("view",)),
    C("flatten", lambda M, a: a.flatten(), (2, 3, 4), ops=("flatten",)),
    C("flatten-dims", lambda M, a: M.flatten(a, 1), (2, 3, 4), ops=("flatten",)),
    C("flatten-middle", lambda M, a: a.flatten(0, 1), (2, 3, 4), ops=("flatten",)),
    C("squeeze", lambda M, a: a.squeeze(), (1, 3, 1), ops=("squeeze",)),
    C("squeeze-dim", lambda M, a: a.squeeze(0), (1, 3, 1), ops=("squeeze",)),
    C("squeeze-noop", lambda M, a: a.squeeze(1), (1, 3, 1), ops=("squeeze",)),
    C("squeeze-dims", lambda M, a: a.squeeze((0, 2)), (1, 3, 1), ops=("squeeze",)),
    C("unsqueeze", lambda M, a: a.unsqueeze(0), (2, 3), ops=("unsqueeze",)),
    C("unsqueeze-neg", lambda M, a: a.unsqueeze(-1), (2, 3), ops=("unsqueeze",)),
    C("transpose", lambda M, a: a.transpose(0, 2), (2, 3, 4), ops=("transpose",)),
    C("transpose-neg", lambda M, a: a.transpose(-1, 0), (2, 3), ops=("transpose",)),
    C("t", lambda M, a: a.t(), (2, 3), ops=("transpose",)),
    C("t-1d", lambda M, a: a.t(), (3,), ops=("transpose",)),
    C("T", lambda M, a: a.T, (2, 3), ops=("permute",)),
    C("permute", lambda M, a: a.permute(2, 0, 1), (2, 3, 4), ops=("permute",)),
    C("permute-tuple", lambda M, a: a.permute((1, 0)), (2, 3), ops=("permute",)),
    C("expand", lambda M, a: a.expand(3, 2, 4), (2, 1), ops=("expand",)),
    C("expand-keep", lambda M, a: a.expand(2, -1, 3), (4, 1), ops=("expand",)),
    C("expand-0dim", lambda M, a: a.expand(3), (), ops=("expand",)),
]

INDEXING = [
    C("index-int", lambda M, a: a[1], (3, 4), ops=("index", "getitem")),
    C("index-neg", lambda M, a: a[-1], (3, 4), ops=("index", "getitem")),
    C("index-slice", lambda M, a: a[1:3], (4, 2), ops=("index",)),
    C("index-step", lambda M, a: a[::2], (5,), ops=("index",)),
    C("index-neg-slice", lambda M, a: a[-3:-1], (5,), ops=("index",)),
    C("index-2d", lambda M, a: a[0, 1], (3, 4), ops=("index",)),
    C("index-col", lambda M, a: a[:, 0], (3, 4), ops=("index",)),
    C("index-mixed", lambda M, a: a[-1, 1:], (3, 4), ops=("index",)),
    C("index-none-ellipsis", lambda M, a: a[None, ..., 1], (2, 3), ops=("index",)),
    C("index-tensor", lambda M, a: a[M.tensor([0, 2, 0])], (4,), ops=("index",)),
    C("index-tensor-2d", lambda M, a: a[M.tensor([1, -1])], (3, 4), ops=("index",)),
    C("index-tensor-col", lambda M, a: a[:, M.tensor([2, 0])], (3, 4), ops=("index",)),
    C("index-two-tensors", lambda M, a: a[M.tensor([0, 2]), M.tensor([1, 1])], (3, 4)),
    C("index-list", lambda M, a: a[[0, 2]], (4,), ops=("index",)),
    C("index-mask", lambda M, a: a[a > 0], (3, 4), ops=("index", "gt")),
    C("index-row-mask", lambda M, a: a[M.tensor([True, False, True])], (3, 4)),
    C("index-put", _index_put, (3,), ops=("index_backward",)),
    C(
        "index-select",
        lambda M, a: a.index_select(0, M.tensor([2, 0, 2])),
        (3, 4),
        ops=("index_select",),
    ),
    C("index-select-dim1", lambda M, a: a.index_select(1, M.tensor([1])), (3, 4)),
    C("cat", lambda M, a, b: M.cat([a, b]), (2, 3), (1, 3), ops=("cat",)),
    C("cat-dim1", lambda M, a, b: M.cat([a, b, a], dim=1), (2, 3), (2, 1), ops=("cat",)),
    C("cat-neg", lambda M, a, b: M.cat((a, b), -1), (2, 2), (2, 3), ops=("cat",)),
    C("cat-empty-part", lambda M, a, b: M.cat([a, b]), (0, 3), (2, 3), ops=("cat",)),
    C("stack", lambda M, a, b: M.stack([a, b]), (2, 3), (2, 3), ops=("stack",)),
    C("stack-dim1", lambda M, a, b: M.stack([a, b, a], dim=1), (2, 3), (2, 3)),
    C("stack-neg", lambda M, a, b: M.stack((a, b), -1), (3,), (3,), ops=("stack",)),
    C("split", lambda M, a: a.split(2), (5, 2), ops=("split",)),
    C("split-dim", lambda M, a: M.split(a, 2, dim=1), (2, 5), ops=("split",)),
    C("split-sizes", lambda M, a: a.split([1, 3], dim=1), (2, 4), ops=("split",)),
    C("chunk", lambda M, a: a.chunk(3), (7,), ops=("chunk",)),
    C("chunk-dim", lambda M, a: M.chunk(a, 2, dim=1), (3, 4), ops=("chunk",)),
]

LOGIC = [
    N("eq", lambda M, a, b: a == b, S, S, domain="int", ops=("eq",)),
    N("eq-fn", lambda M, a, b: M.eq(a, b), S, (3,), domain="int", ops=("eq",)),
    N("ne", lambda M, a, b: a != b, S, S, domain="int", ops=("ne",)),
    N("ne-fn", lambda M, a: a.ne(0.0), S, domain="int", ops=("ne",)),
    N("lt", lambda M, a, b: a < b, S, S, domain="int", ops=("lt",)),
    N("le", lambda M, a, b: M.le(a, b), S, (3,), domain="int", ops=("le",)),
    N("gt-scalar", lambda M, a: a > 0.5, S, ops=("gt",)),
    N("ge", lambda M, a, b: a.ge(b), (3, 1), (4,), domain="int", ops=("ge",)),
    N("logical-and", lambda M, a, b: M.logical_and(a > 0, b > 0), S, S, ops=("logical_and",)),
    N("logical-or", lambda M, a, b: (a > 0).logical_or(b > 0), S, S, ops=("logical_or",)),
    N("logical-not", lambda M, a: M.logical_not(a > 0), S, ops=("logical_not",)),
    N("logical-and-float", lambda M, a, b: M.logical_and(a, b), S, S, domain="int"),
    N("logical-ops", lambda M, a, b: ((a > 0) & (b > 0)) | ~(a > b), S, S),
    N("logical-xor", lambda M, a, b: (a > 0).logical_xor(b > 0), S, S, ops=("logical_xor",)),
]

COPIES = [
    C("clone", lambda M, a: a.clone(), S, ops=("clone",)),
    C("detach", lambda M, a: a.detach() * a, S, ops=("detach",), fd=False),
    C("to-float64", lambda M, a: a.to(dtype_of(M, "float64")), S, ops=("to_dtype",)),
    C("to-float32", lambda M, a: a.to(dtype_of(M, "float32")) * 2, S, fd=False),
    C("double", lambda M, a: a.double() * a, S, ops=("to_dtype",)),
    C("float", lambda M, a: a.float(), S, fd=False),  # float32 out: no float64 check
    N("long", lambda M, a: (a * 3).long(), S, ops=("to_dtype",)),
    N("to-bool", lambda M, a: a.bool(), S, domain="int", ops=("to_dtype",)),
]

INPLACE = [
    C("add_", lambda M, a, b: (a * 1).add_(b), S, (3,), ops=("add_",)),
    C("add_-alpha", lambda M, a, b: (a * 1).add_(b, alpha=2), S, S, ops=("add_",)),
    C("iadd", lambda M, a: _iadd(a * 1, 2.0), S, ops=("add_",)),
    C("sub_", lambda M, a, b: (a * 1).sub_(b), S, S, ops=("sub_",)),
    C("mul_", lambda M, a, b: (a + 0).mul_(b), S, S, ops=("mul_",)),
    C("div_", lambda M, a, b: (a + 0).div_(b), S, S, domain=("real", "nonzero"), ops=("div_",)),
    C("zero_", lambda M, a: (a * 2).zero_() + a, S, ops=("zero_",)),
    C("copy_", lambda M, a, b: (a * 2).copy_(b), S, (3,), ops=("copy_",)),
    C("setitem", _setitem, (3,), (2,), ops=("index",)),
    C("setitem-broadcast", _setitem, (3, 2), (2,)),
    C("setitem-leading-ones", _setitem, (3, 2), (1, 1, 2)),
    C("setitem-row", _setitem_row, (3, 2), (1, 2)),
]


def _iadd(x: Any, v: Any) -> Any:
    x += v
    return x


CASES = [*ELEMENTWISE, *AWKWARD, *REDUCTIONS, *PRODUCTS, *SHAPES, *INDEXING, *LOGIC, *COPIES,
         *INPLACE]  # fmt: skip
IDS = [c.id for c in CASES]


def test_case_ids_are_unique() -> None:
    assert len(IDS) == len(set(IDS))


def test_every_registered_op_is_covered() -> None:
    covered = {op for case in CASES for op in case.ops}
    assert set(OPS) - covered == set()


# ----- engine and torch side by side -----


def run_both(case: Case, dtype: str) -> tuple[list[E.Tensor], list[torch.Tensor], list[Any]]:
    """Outputs and leaf gradients of ``case`` in both frameworks (cotangent seeded by id)."""
    arrays = case.inputs(dtype)
    grads = [i not in case.const for i in range(len(arrays))]
    xe = [E.tensor(a, requires_grad=r) for a, r in zip(arrays, grads, strict=True)]
    xt = [torch.tensor(a, requires_grad=r) for a, r in zip(arrays, grads, strict=True)]
    oe, ot = tensors_of(case.fn(E, *xe)), tensors_of(case.fn(torch, *xt))
    assert len(oe) == len(ot)
    rng = rng_for("cotangent/" + case.id)
    pairs = [(e, t) for e, t in zip(oe, ot, strict=True) if t.requires_grad]
    assert [e.requires_grad for e in oe] == [t.requires_grad for t in ot]
    if pairs and case.backward:
        cots = [rng.standard_normal(t.shape).astype(dtype) for _, t in pairs]
        torch.autograd.backward(
            [t for _, t in pairs],
            [torch.tensor(c, dtype=t.dtype) for c, (_, t) in zip(cots, pairs, strict=True)],
        )
        E.autograd.backward(
            [e for e, _ in pairs],
            [E.tensor(c, dtype=e.dtype) for c, (e, _) in zip(cots, pairs, strict=True)],
        )
    return oe, ot, list(zip(xe, xt, strict=True))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_values_and_grads_match_torch(case: Case, dtype: str) -> None:
    tol = TOLERANCE[dtype]
    oe, ot, leaves = run_both(case, dtype)
    for i, (e, t) in enumerate(zip(oe, ot, strict=True)):
        assert_same(e, t, f"output {i}", **tol)
        assert engine_name(e) == grad_fn_name(t), f"grad_fn of output {i}"
    for i, (e, t) in enumerate(leaves):
        if t.grad is None:
            assert e.grad is None, f"grad of input {i}"
        else:
            assert e.grad is not None, f"grad of input {i}"
            assert_same(e.grad, t.grad, f"grad of input {i}", **tol)


# ----- finite differences (float64) -----


def _loss(case: Case, arrays: Sequence[numpy.ndarray], cots: list[numpy.ndarray]) -> float:
    with E.no_grad():
        outs = [o for o in tensors_of(case.fn(E, *[E.tensor(a) for a in arrays]))
                if o.dtype == "float64"]  # fmt: skip
    return float(sum((o.numpy() * c).sum() for o, c in zip(outs, cots, strict=True)))


DIFFERENTIABLE = [c for c in CASES if c.fd]


@pytest.mark.parametrize("case", DIFFERENTIABLE, ids=[c.id for c in DIFFERENTIABLE])
def test_grads_match_finite_differences(case: Case) -> None:
    arrays = case.inputs("float64")
    xs = [E.tensor(a, requires_grad=i not in case.const) for i, a in enumerate(arrays)]
    outs = [o for o in tensors_of(case.fn(E, *xs)) if o.dtype == "float64"]
    rng = rng_for("fd/" + case.id)
    cots = [rng.standard_normal(o.shape) for o in outs]
    graded = [(o, c) for o, c in zip(outs, cots, strict=True) if o.requires_grad]
    assert graded, "no differentiable output: declare the case with N()"
    E.autograd.backward([o for o, _ in graded], [E.tensor(c) for _, c in graded])
    grads = [x.grad.numpy() if x.grad is not None else numpy.zeros(x.shape) for x in xs]
    for _ in range(2):  # two random directions
        dirs = [rng.standard_normal(a.shape) * (i not in case.const) for i, a in enumerate(arrays)]
        h = 1e-6
        plus = _loss(case, [a + h * d for a, d in zip(arrays, dirs, strict=True)], cots)
        minus = _loss(case, [a - h * d for a, d in zip(arrays, dirs, strict=True)], cots)
        numeric = (plus - minus) / (2 * h)
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, dirs, strict=True))
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-6)


# ----- result dtypes: type promotion with Python scalars, int tensors, 0-dim tensors -----


def mk(M: Any, values: Any, dtype: str) -> Any:
    return M.tensor(values, dtype=dtype_of(M, dtype))


def mask(M: Any) -> Any:
    return M.tensor([True, False])


def leaf(M: Any, n: float) -> Any:
    return M.arange(n, requires_grad=True)


PROMOTION: list[tuple[str, Callable[[Any], Any]]] = [
    ("int-times-float-scalar", lambda M: mk(M, [1, 2], "int64") * 2.5),
    ("float-times-float-scalar", lambda M: mk(M, [1, 2], "float32") * 2.5),
    ("float-times-int-scalar", lambda M: mk(M, [1, 2], "float64") * 2),
    ("int32-plus-int-scalar", lambda M: mk(M, [1, 2], "int32") + 1),
    ("int32-plus-bool-scalar", lambda M: mk(M, [1, 2], "int32") + True),
    ("int-plus-bool-scalar", lambda M: mk(M, [1, 2], "int64") + True),
    ("bool-plus-int-scalar", lambda M: mk(M, [True, False], "bool") + 3),
    ("bool-times-float-scalar", lambda M: mk(M, [True, False], "bool") * 1.5),
    ("float16-times-float-scalar", lambda M: mk(M, [1, 2], "float16") * 2.5),
    ("int32-plus-float32", lambda M: mk(M, [1, 2], "int32") + mk(M, [1, 2], "float32")),
    ("float32-plus-float64", lambda M: mk(M, [1, 2], "float32") + mk(M, [1, 2], "float64")),
    ("float32-plus-0dim-float64", lambda M: mk(M, [1, 2], "float32") + mk(M, 1.0, "float64")),
    ("int64-plus-0dim-float64", lambda M: mk(M, [1, 2], "int64") + mk(M, 1.0, "float64")),
    ("int32-times-0dim-int64", lambda M: mk(M, [1, 2], "int32") * mk(M, 3, "int64")),
    ("0dim-plus-0dim", lambda M: mk(M, 1.0, "float32") + mk(M, 1.0, "float64")),
    ("0dim-int-plus-float-scalar", lambda M: mk(M, 2, "int64") + 0.5),
    ("float16-plus-0dim-float32", lambda M: mk(M, [1, 2], "float16") + mk(M, 1.0, "float32")),
    ("uint8-plus-int8", lambda M: mk(M, [1, 2], "uint8") + mk(M, [1, 2], "int8")),
    ("bool-plus-bool", lambda M: mk(M, [True, False], "bool") + mk(M, [True, True], "bool")),
    ("int-div-int", lambda M: mk(M, [1, 2], "int64") / mk(M, [2, 4], "int64")),
    ("int-div-scalar", lambda M: mk(M, [1, 2], "int32") / 2),
    ("scalar-div-int", lambda M: 2 / mk(M, [1, 2], "int64")),
    ("int-floordiv", lambda M: mk(M, [5, -7], "int64") // 2),
    ("rsub-int", lambda M: 1 - mk(M, [5, 7], "int32")),
    ("float-eq-int", lambda M: mk(M, [1.0, 2.0], "float32") == mk(M, [1, 3], "int64")),
    ("int-gt-scalar", lambda M: mk(M, [1, 2], "int64") > 1.5),
    ("int-sum", lambda M: mk(M, [1, 2], "int32").sum()),
    ("bool-sum", lambda M: mk(M, [True, True], "bool").sum()),
    ("int-sum-dim", lambda M: mk(M, [[1, 2]], "int8").sum(dim=1)),
    ("int-prod", lambda M: mk(M, [3, 2], "int32").prod()),
    ("int-pow-int", lambda M: mk(M, [1, 2, 3], "int64") ** 2),
    ("int-pow-float", lambda M: mk(M, [1, 2, 3], "int64") ** 0.5),
    ("int-pow-float-tensor", lambda M: mk(M, [1, 2], "int64") ** mk(M, [2.0, 3.0], "float32")),
    ("int-scalar-pow-int", lambda M: 2 ** mk(M, [1, 2], "int64")),
    ("float-scalar-pow-int", lambda M: 2.5 ** mk(M, [1, 2], "int64")),
    ("int-exp", lambda M: M.exp(mk(M, [0, 1], "int64"))),
    ("int-sqrt", lambda M: M.sqrt(mk(M, [1, 4], "int32"))),
    ("int-sigmoid", lambda M: M.sigmoid(mk(M, [0, 1], "int64"))),
    ("bool-sin", lambda M: M.sin(mk(M, [True, False], "bool"))),
    ("int-abs", lambda M: mk(M, [1, -2], "int64").abs()),
    ("int-relu", lambda M: M.relu(mk(M, [1, -2], "int32"))),
    ("int-neg", lambda M: -mk(M, [1, -2], "int16")),
    ("int-clamp-float", lambda M: mk(M, [0, 1, 2, 3], "int64").clamp(0.5, 2.5)),
    ("int-clamp-int", lambda M: mk(M, [0, 1, 2, 3], "int32").clamp(1, 2)),
    ("float-clamp-int", lambda M: mk(M, [0.0, 3.0], "float64").clamp(1)),
    ("maximum-int32-float32", lambda M: M.maximum(mk(M, [1, 5], "int32"), M.tensor([2.0, 3.0]))),
    ("minimum-int-int", lambda M: M.minimum(mk(M, [1, 5], "int64"), mk(M, [2, 3], "int64"))),
    ("where-int-float-scalar", lambda M: M.where(mask(M), M.tensor([1, 2]), 2.5)),
    ("where-float32-0dim-64", lambda M: M.where(mask(M), M.ones(2), mk(M, 2.0, "float64"))),
    ("where-int32-int64", lambda M: M.where(mask(M), mk(M, [1, 2], "int32"), M.tensor([3, 4]))),
    ("cat-float32-float64", lambda M: M.cat([mk(M, [1, 2], "float32"), mk(M, [3], "float64")])),
    ("cat-int-float", lambda M: M.cat([mk(M, [1, 2], "int64"), mk(M, [3.5], "float32")])),
    ("stack-int32-int64", lambda M: M.stack([mk(M, [1, 2], "int32"), mk(M, [3, 4], "int64")])),
    ("int-dot", lambda M: M.dot(mk(M, [1, 2], "int64"), mk(M, [3, 4], "int64"))),
    ("int-mm", lambda M: mk(M, [[1, 2]], "int64") @ mk(M, [[3], [4]], "int64")),
    ("int-max", lambda M: mk(M, [1, 5, 2], "int64").max()),
    ("int-max-dim", lambda M: mk(M, [[1, 5, 2]], "int32").max(dim=1)),
    ("int-argmax", lambda M: mk(M, [1, 5, 2], "int32").argmax()),
    ("int-index", lambda M: mk(M, [1, 5, 2], "int32")[mk(M, [2, 0], "int64")]),
    ("int-reshape", lambda M: mk(M, [1, 5, 2, 3], "uint8").reshape(2, 2)),
    ("float64-to-int32", lambda M: mk(M, [1.7, -2.2], "float64").to(dtype_of(M, "int32"))),
    ("int-to-float16", lambda M: mk(M, [1, 2], "int64").to(dtype_of(M, "float16"))),
    ("float-long", lambda M: mk(M, [1.7, -2.2], "float32").long()),
    ("int-double", lambda M: mk(M, [1, 2], "int64").double()),
    ("int-logical-and", lambda M: M.logical_and(mk(M, [1, 0], "int64"), mk(M, [2, 2], "int64"))),
    ("float-logical-not", lambda M: M.logical_not(mk(M, [1.5, 0.0], "float32"))),
    ("int-logsumexp", lambda M: M.logsumexp(mk(M, [1, 2], "int64"), dim=0)),
]


@pytest.mark.parametrize("fn", [f for _, f in PROMOTION], ids=[i for i, _ in PROMOTION])
def test_result_dtype_matches_torch(fn: Callable[[Any], Any]) -> None:
    for i, (e, t) in enumerate(zip(tensors_of(fn(E)), tensors_of(fn(torch)), strict=True)):
        assert_same(e, t, f"output {i}", rtol=1e-6)


# ----- repr of results (the printed grad_fn, dtype suffixes, namedtuple results) -----


REPRS: list[tuple[str, Callable[[Any], Any]]] = [
    ("mul", lambda M: M.arange(4.0, requires_grad=True) * 2),
    ("sum-dim", lambda M: M.ones((2, 3), requires_grad=True).sum(dim=1)),
    (
        "float64-matmul",
        lambda M: leaf(M, 2.0).double().reshape(1, 2) @ mk(M, [[3.0], [4.0]], "float64"),
    ),
    ("int-sum", lambda M: M.arange(4).sum()),
    ("comparison", lambda M: M.arange(4.0, requires_grad=True) > 1),
    ("max-dim", lambda M: mk(M, [1.0, 3.0, 3.0], "float32").requires_grad_().max(dim=0)),
    ("min-dim", lambda M: mk(M, [[1, 3], [0, 5]], "int64").min(dim=1)),
    ("softmax", lambda M: M.softmax(M.arange(3.0, requires_grad=True), dim=0)),
    ("norm", lambda M: M.arange(3.0, requires_grad=True).norm()),
    ("index", lambda M: M.arange(6.0, requires_grad=True).reshape(2, 3)[:, M.tensor([2, 0])]),
    ("transposed-reshape", lambda M: leaf(M, 6.0).reshape(2, 3).t().reshape(6)),
    ("floordiv", lambda M: M.arange(4.0, requires_grad=True) // 3),
    ("to-float16", lambda M: M.arange(3.0, requires_grad=True).to(dtype_of(M, "float16"))),
    ("split", lambda M: M.arange(5.0, requires_grad=True).split(2)),
]


@pytest.mark.parametrize("fn", [f for _, f in REPRS], ids=[i for i, _ in REPRS])
def test_repr_matches_torch(fn: Callable[[Any], Any]) -> None:
    assert repr(fn(E)) == repr(fn(torch))


# ----- forward errors: torch's message and exception class -----


def _ones(M: Any, *shape: int, dtype: str = "float32") -> Any:
    return M.ones(shape, dtype=dtype_of(M, dtype))


ERRORS: list[tuple[str, Callable[[Any], Any]]] = [
    # reference section 14
    ("dot-dtypes", lambda M: M.dot(M.arange(3), M.arange(3.0))),
    ("dot-2d", lambda M: M.dot(_ones(M, 2, 2), _ones(M, 2, 2))),
    ("dot-sizes", lambda M: M.dot(_ones(M, 2), _ones(M, 3))),
    ("matmul-shapes", lambda M: _ones(M, 2, 3) @ _ones(M, 2, 3)),
    ("mm-vector", lambda M: M.mm(_ones(M, 3), _ones(M, 3))),
    ("add-broadcast", lambda M: _ones(M, 3) + _ones(M, 4)),
    ("mul-broadcast", lambda M: _ones(M, 2, 3) * _ones(M, 3, 2)),
    ("reshape-size", lambda M: _ones(M, 4).reshape(3)),
    ("view-size", lambda M: _ones(M, 4).view(3, 2)),
    ("index-out-of-range", lambda M: _ones(M, 3)[5]),
    ("bool-ambiguous", lambda M: bool(_ones(M, 3) > 0)),
    ("numpy-requires-grad", lambda M: M.ones(3, requires_grad=True).numpy()),
    ("cat-ndims", lambda M: M.cat([_ones(M, 2), _ones(M, 2, 2)])),
    ("stack-sizes", lambda M: M.stack([_ones(M, 2), _ones(M, 3)])),
    ("softmax-dim", lambda M: M.softmax(_ones(M, 3), dim=1)),
    ("sum-dim", lambda M: M.arange(4.0).sum(dim=2)),
    # shapes
    ("sub-broadcast-3d", lambda M: _ones(M, 2, 3, 4) - _ones(M, 5, 1)),
    ("maximum-broadcast", lambda M: M.maximum(_ones(M, 2), _ones(M, 3))),
    ("where-broadcast", lambda M: M.where(_ones(M, 2) > 0, _ones(M, 3), 0.0)),
    ("mm-inner", lambda M: M.mm(_ones(M, 2, 3), _ones(M, 4, 2))),
    ("mv-sizes", lambda M: M.mv(_ones(M, 2, 3), _ones(M, 4))),
    ("matmul-0d", lambda M: M.matmul(_ones(M), _ones(M, 3))),
    ("matmul-1d-2d", lambda M: _ones(M, 3) @ _ones(M, 2, 4)),
    ("matmul-1d-2d-dtypes", lambda M: _ones(M, 3) @ _ones(M, 3, 4, dtype="float64")),
    ("matmul-2d-1d-dtypes", lambda M: _ones(M, 2, 3, dtype="int64") @ _ones(M, 3)),
    ("matmul-3d-1d", lambda M: _ones(M, 2, 2, 3) @ _ones(M, 4)),
    ("matmul-3d-2d", lambda M: _ones(M, 2, 2, 3) @ _ones(M, 4, 5)),
    ("matmul-3d-2d-dtypes", lambda M: _ones(M, 2, 2, 3) @ _ones(M, 3, 4, dtype="float64")),
    ("matmul-3d-1d-dtypes", lambda M: _ones(M, 2, 2, 3) @ _ones(M, 3, dtype="float64")),
    ("matmul-3d-3d", lambda M: _ones(M, 2, 2, 3) @ _ones(M, 2, 4, 3)),
    ("matmul-3d-3d-dtypes", lambda M: _ones(M, 2, 2, 3) @ _ones(M, 2, 3, 4, dtype="float64")),
    ("matmul-batch-broadcast", lambda M: _ones(M, 2, 2, 3) @ _ones(M, 3, 3, 4)),
    ("matmul-4d-3d", lambda M: _ones(M, 2, 1, 2, 3) @ _ones(M, 3, 4, 5)),
    ("matmul-2d-3d", lambda M: _ones(M, 3, 5) @ _ones(M, 2, 4, 6)),
    ("matmul-2d-3d-dtypes", lambda M: _ones(M, 3, 4) @ _ones(M, 2, 4, 6, dtype="float64")),
    ("matmul-1d-3d", lambda M: _ones(M, 5) @ _ones(M, 2, 4, 6)),
    ("matmul-1d-3d", lambda M: _ones(M, 3) @ _ones(M, 2, 4, 5)),
    ("matmul-1d-3d-grad", lambda M: M.ones((3,), requires_grad=True) @ _ones(M, 2, 4, 5)),
    ("matmul-2d-3d", lambda M: _ones(M, 2, 3) @ _ones(M, 2, 4, 5)),
    ("matmul-2d-3d-grad", lambda M: M.ones((2, 3), requires_grad=True) @ _ones(M, 2, 4, 5)),
    ("matmul-2d-3d-dtypes", lambda M: _ones(M, 2, 3) @ _ones(M, 2, 3, 4, dtype="float64")),
    (
        "matmul-2d-3d-grad-dtypes",
        lambda M: leaf(M, 6.0).view(2, 3) @ _ones(M, 2, 3, 4, dtype="float64"),
    ),
    ("matmul-strided-3d-2d", lambda M: _ones(M, 2, 2, 3).transpose(0, 1) @ _ones(M, 4, 5)),
    ("matmul-strided-3d-1d", lambda M: _ones(M, 2, 2, 3).transpose(0, 1) @ _ones(M, 4)),
    ("bmm-2d", lambda M: M.bmm(_ones(M, 2, 3), _ones(M, 3, 2))),
    ("bmm-batch", lambda M: M.bmm(_ones(M, 2, 3, 4), _ones(M, 3, 4, 2))),
    ("outer-2d", lambda M: M.outer(_ones(M, 2, 2), _ones(M, 2))),
    ("view-noncontiguous", lambda M: _ones(M, 2, 3).t().view(6)),
    ("reshape-two-inferred", lambda M: _ones(M, 4).reshape(-1, -1)),
    ("expand-smaller", lambda M: _ones(M, 2, 3).expand(3)),
    ("expand-mismatch", lambda M: _ones(M, 2, 3).expand(4, 3, 2)),
    ("expand-smaller-int", lambda M: _ones(M, 2, 3, dtype="int32").expand(3)),
    ("expand-smaller-bool", lambda M: _ones(M, 2, 3, dtype="bool").expand(3)),
    ("permute-length", lambda M: _ones(M, 2, 3).permute(0)),
    ("permute-duplicate", lambda M: _ones(M, 2, 3).permute(0, 0)),
    ("transpose-dim", lambda M: _ones(M, 2, 3).transpose(0, 2)),
    ("t-3d", lambda M: _ones(M, 2, 3, 4).t()),
    ("unsqueeze-dim", lambda M: _ones(M, 2).unsqueeze(3)),
    ("squeeze-dim", lambda M: _ones(M, 2).squeeze(-2)),
    ("flatten-order", lambda M: _ones(M, 2, 3).flatten(1, 0)),
    ("cat-sizes", lambda M: M.cat([_ones(M, 2, 3), _ones(M, 2, 4)])),
    ("cat-0d", lambda M: M.cat([_ones(M), _ones(M)])),
    ("cat-empty", lambda M: M.cat([])),
    ("cat-dim", lambda M: M.cat([_ones(M, 2)], dim=1)),
    ("split-sizes", lambda M: _ones(M, 4).split([1, 2])),
    ("chunk-zero", lambda M: _ones(M, 4).chunk(0)),
    ("index-select-2d-index", lambda M: _ones(M, 3).index_select(0, M.tensor([[0]]))),
    ("index-select-range", lambda M: _ones(M, 3).index_select(0, M.tensor([3]))),
    ("index-0d", lambda M: _ones(M)[0]),
    ("index-too-many", lambda M: _ones(M, 3)[0, 0]),
    ("index-float-tensor", lambda M: _ones(M, 3)[M.tensor([0.0])]),
    ("index-negative", lambda M: _ones(M, 3, 2)[-4]),
    ("max-dim-range", lambda M: _ones(M, 3).max(dim=1)),
    ("norm-dim-range", lambda M: _ones(M, 3).norm(dim=-2)),
    ("logsumexp-dim-range", lambda M: M.logsumexp(_ones(M, 3), dim=2)),
    ("sum-dims-repeat", lambda M: _ones(M, 3, 2).sum(dim=(0, 0))),
    ("sum-dims-repeat-neg", lambda M: _ones(M, 3, 2).sum(dim=(1, 0, -1))),
    ("dot-dtypes-sizes", lambda M: M.dot(M.arange(2), _ones(M, 3))),
    # dtypes
    ("mean-int", lambda M: M.arange(4).mean()),
    ("mean-bool", lambda M: (M.arange(4) > 1).mean()),
    ("pow-int-negative", lambda M: M.arange(1, 4) ** -1),
    ("floordiv-int-zero", lambda M: M.arange(4) // 0),
    ("mm-dtypes", lambda M: M.mm(_ones(M, 2, 2), _ones(M, 2, 2, dtype="float64"))),
    ("matmul-dtypes", lambda M: _ones(M, 2, 2, dtype="int64") @ _ones(M, 2, 2)),
    ("mv-dtypes", lambda M: M.mv(_ones(M, 2, 2), _ones(M, 2, dtype="float64"))),
    ("bmm-dtypes", lambda M: M.bmm(_ones(M, 1, 2, 2), _ones(M, 1, 2, 2, dtype="float64"))),
    ("sub-bool", lambda M: (M.arange(2) > 0) - (M.arange(2) > 1)),
    ("neg-bool", lambda M: -(M.arange(2) > 0)),
    ("relu-bool", lambda M: M.relu(M.arange(2) > 0)),
    ("softmax-int", lambda M: M.softmax(M.arange(3), dim=0)),
    ("softmax-int-dim0", lambda M: M.softmax(_ones(M, 2, 2, dtype="int64"), dim=0)),
    ("log-softmax-int", lambda M: M.log_softmax(_ones(M, 2, 2, dtype="int32"), dim=1)),
    ("norm-int", lambda M: M.arange(3).norm()),
    ("where-condition", lambda M: M.where(_ones(M, 2), _ones(M, 2), _ones(M, 2))),
    ("where-condition-int", lambda M: M.where(M.arange(2), _ones(M, 2), _ones(M, 2))),
    ("requires-grad-int", lambda M: M.arange(3).requires_grad_()),
    ("tensor-requires-grad-int", lambda M: M.tensor([1, 2], requires_grad=True)),
    ("clamp-no-bounds", lambda M: _ones(M, 2).clamp()),
    ("item-many", lambda M: _ones(M, 2).item()),
    ("max-empty", lambda M: _ones(M, 0).max()),
    ("backward-floordiv", lambda M: (M.arange(3.0, requires_grad=True) // 2).sum().backward()),
    # in place
    ("add_-int-by-float", lambda M: M.arange(3).add_(1.5)),
    ("mul_-int-by-float-tensor", lambda M: M.arange(3).mul_(_ones(M, 3))),
    ("add_-broadcast-bigger", lambda M: _ones(M, 3).add_(_ones(M, 2, 3))),
    ("add_-leaf", lambda M: M.ones((3,), requires_grad=True).add_(1)),
    ("copy_-broadcast-bigger", lambda M: _ones(M, 3).copy_(_ones(M, 2, 3))),
    ("setitem-shape", lambda M: _setitem(M, _ones(M, 3), _ones(M, 3))),
    ("setitem-more-dims", lambda M: _setitem(M, _ones(M, 3), _ones(M, 2, 2))),
]


def torch_error(fn: Callable[[Any], Any]) -> Exception:
    with pytest.raises(Exception) as info:
        fn(torch)
    return info.value


@pytest.mark.parametrize("fn", [f for _, f in ERRORS], ids=[i for i, _ in ERRORS])
def test_error_matches_torch(fn: Callable[[Any], Any]) -> None:
    expected = torch_error(fn)
    with pytest.raises(EngineError) as info:
        fn(E)
    assert (info.value.torch_type, str(info.value)) == (type(expected).__name__, str(expected))
