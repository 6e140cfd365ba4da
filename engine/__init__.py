"""gradserve's engine: tensors, ops and reverse-mode autograd with PyTorch's semantics.

The module doubles as a ``torch``-like namespace: ``engine.arange(4.0)``, ``engine.dot``,
``engine.no_grad()``, ``engine.autograd.grad``.
"""

import warnings

from engine import autograd, functional
from engine.creation import (
    Generator,
    arange,
    empty,
    eye,
    full,
    full_like,
    linspace,
    ones,
    ones_like,
    rand,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from engine.errors import EngineError
from engine.functional import (
    add,
    argmax,
    argmin,
    bmm,
    cat,
    chunk,
    clamp,
    div,
    dot,
    eq,
    flatten,
    ge,
    gt,
    le,
    log_softmax,
    logical_and,
    logical_or,
    logical_xor,
    logsumexp,
    lt,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mm,
    mul,
    mv,
    ne,
    norm,
    outer,
    pow,
    prod,
    softmax,
    split,
    stack,
    sub,
    sum,
)
from engine.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from engine.ops.elementwise import (
    abs,
    cos,
    exp,
    log,
    logical_not,
    relu,
    sigmoid,
    sin,
    sqrt,
    tan,
    tanh,
    where,
)
from engine.ops.registry import OPS
from engine.tensor import Tensor

# NumPy warns on 0/0, log(0) and overflow; PyTorch returns nan and inf silently, and so do we.
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"engine(\.|$)")

backward = autograd.backward
__all__ = [
    "OPS", "EngineError", "Generator", "Tensor", "abs", "add", "arange", "argmax", "argmin",
    "autograd", "backward", "bmm", "cat", "chunk", "clamp", "cos", "div", "dot", "empty",
    "enable_grad", "eq", "exp", "eye", "flatten", "full", "full_like", "functional", "ge", "gt",
    "is_grad_enabled", "le", "linspace", "log", "log_softmax", "logical_and", "logical_not",
    "logical_or", "logical_xor", "logsumexp", "lt", "matmul", "max", "maximum", "mean", "min",
    "minimum", "mm", "mul", "mv", "ne", "no_grad", "norm", "ones", "ones_like", "outer", "pow",
    "prod", "rand", "randn", "relu", "set_grad_enabled", "sigmoid", "sin", "softmax", "split",
    "sqrt", "stack", "sub", "sum", "tan", "tanh", "tensor", "where", "zeros", "zeros_like",
]  # fmt: skip
