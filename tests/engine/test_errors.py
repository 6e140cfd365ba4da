"""Autograd error texts and types, side by side with torch.

Every case builds some state and then makes one call that fails in torch; the engine must
raise an ``EngineError`` whose ``str`` is torch's message and whose ``torch_type`` is torch's
exception class, and the failed call must leave the state as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import engine as E
from engine.errors import EngineError, FailedPrecondition, InvalidArgument
from tests.engine.side_by_side import Lib, run, same

FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward."
)
HINT = (
    "Hint: enable anomaly detection to find the operation that failed to compute its "
    "gradient, with torch.autograd.set_detect_anomaly(True, check_nan=False)."
)


def _modified(clause: str, version: int = 1) -> str:
    return (
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [torch.FloatTensor [4]]{clause} is at version {version}; expected version "
        f"0 instead. {HINT}"
    )


# Each case: (setup returning the state to check, the failing call, the expected text).
# ``setup(L)`` returns a dict of tensors; ``call(L, s)`` is the one call that fails.
Case = tuple[Callable[[Lib], dict[str, Any]], Callable[[Lib, dict[str, Any]], Any], str]


def _x(L: Lib) -> dict[str, Any]:
    return {"x": L.arange(4.0, requires_grad=True)}


def _used(L: Lib, build: Callable[[Any], Any]) -> dict[str, Any]:
    """A leaf, an output built from it, and one backward already done."""
    x = L.arange(4.0, requires_grad=True)
    y = build(x)
    y.backward()
    return {"x": x, "y": y}


def _backward(L: Lib, s: dict[str, Any]) -> Any:
    return s["y"].backward()


def _with(L: Lib, build: Callable[[Any], Any]) -> dict[str, Any]:
    x = L.arange(4.0, requires_grad=True)
    return {"x": x, "y": build(x)}


def _saved_modified(L: Lib, write: Callable[[Any], Any], saved: str = "mul") -> dict[str, Any]:
    x = L.arange(4.0, requires_grad=True)
    y = x * 2
    z = y * y if saved == "mul" else y.sin()
    write(y)
    return {"x": x, "y": y, "z": z.sum()}


CASES: dict[str, Case] = {
    # 1. backward on something without a graph
    "no_graph_leaf": (
        lambda L: {"t": L.tensor(1.0)},
        lambda L, s: s["t"].backward(),
        "element 0 of tensors does not require grad and does not have a grad_fn",
    ),
    "no_graph_sum": (
        lambda L: {"t": L.ones(3).sum()},
        lambda L, s: s["t"].backward(),
        "element 0 of tensors does not require grad and does not have a grad_fn",
    ),
    "no_graph_second_output": (
        lambda L: _with(L, lambda x: (x * x).sum()),
        lambda L, s: L.autograd.backward([s["y"], L.ones(2).sum()]),
        "element 1 of tensors does not require grad and does not have a grad_fn",
    ),
    "grad_of_no_graph": (
        _x,
        lambda L, s: L.autograd.grad(L.ones(3).sum(), s["x"]),
        "element 0 of tensors does not require grad and does not have a grad_fn",
    ),
    # 2. non-scalar outputs and gradient shapes
    "implicit_non_scalar": (
        lambda L: _with(L, lambda x: x * x),
        lambda L, s: s["y"].backward(),
        "grad can be implicitly created only for scalar outputs",
    ),
    "implicit_non_scalar_grad": (
        lambda L: _with(L, lambda x: x * x),
        lambda L, s: L.autograd.grad(s["y"], s["x"]),
        "grad can be implicitly created only for scalar outputs",
    ),
    "gradient_shape_3": (
        lambda L: _with(L, lambda x: x * x),
        lambda L, s: s["y"].backward(gradient=L.ones(3)),
        "Mismatch in shape: grad_output[0] has a shape of torch.Size([3]) and output[0] has a "
        "shape of torch.Size([4]).",
    ),
    "gradient_shape_1": (
        lambda L: _with(L, lambda x: x * x),
        lambda L, s: s["y"].backward(gradient=L.ones(1)),
        "Mismatch in shape: grad_output[0] has a shape of torch.Size([1]) and output[0] has a "
        "shape of torch.Size([4]).",
    ),
    "gradient_shape_2x2": (
        lambda L: _with(L, lambda x: x * x),
        lambda L, s: s["y"].backward(gradient=L.ones((2, 2))),
        "Mismatch in shape: grad_output[0] has a shape of torch.Size([2, 2]) and output[0] has "
        "a shape of torch.Size([4]).",
    ),
    "gradient_shape_scalar": (
        lambda L: _with(L, lambda x: (x * x).sum()),
        lambda L, s: s["y"].backward(gradient=L.ones(1)),
        "Mismatch in shape: grad_output[0] has a shape of torch.Size([1]) and output[0] has a "
        "shape of torch.Size([]).",
    ),
    "too_few_grad_outputs": (
        lambda L: _with(L, lambda x: x * x),
        lambda L, s: L.autograd.grad(
            [s["y"].sum(), s["x"].sum()], s["x"], grad_outputs=[L.tensor(1.0)]
        ),
        "got 2 tensors and 1 gradients",
    ),
    "too_few_grad_tensors": (
        lambda L: _with(L, lambda x: x * x),
        lambda L, s: L.autograd.backward(
            [s["y"].sum(), s["x"].sum()], grad_tensors=[L.tensor(1.0)]
        ),
        "got 2 tensors and 1 gradients",
    ),
    # 3. buffers freed by an earlier pass
    "freed_two_dot": (
        lambda L: _used(L, lambda x: 2 * L.dot(x, x)),
        lambda L, s: s["y"].backward(),
        FREED,
    ),
    "freed_mul_scalar": (
        lambda L: _used(L, lambda x: (x * 2).sum()),
        lambda L, s: s["y"].backward(),
        FREED,
    ),
    "freed_pow": (
        lambda L: _used(L, lambda x: (x**2).sum()),
        lambda L, s: s["y"].backward(),
        FREED,
    ),
    "freed_norm": (lambda L: _used(L, lambda x: x.norm()), lambda L, s: s["y"].backward(), FREED),
    "freed_grad": (
        lambda L: _used(L, lambda x: (x * x).sum()),
        lambda L, s: L.autograd.grad(s["y"], s["x"]),
        FREED,
    ),
    "freed_via_shared_subgraph": (
        lambda L: _used(L, lambda x: x.exp().sum() + (x.exp() * 3).sum()),
        lambda L, s: s["y"].backward(gradient=L.tensor(2.0)),
        FREED,
    ),
    # 4. requires_grad
    "requires_grad_false_on_non_leaf": (
        lambda L: _with(L, lambda x: x * 2),
        lambda L, s: s["y"].requires_grad_(False),
        "you can only change requires_grad flags of leaf variables. If you want to use a "
        "computed variable in a subgraph that doesn't require differentiation use "
        "var_no_grad = var.detach().",
    ),
    "requires_grad_assigned_true_on_non_leaf": (
        lambda L: _with(L, lambda x: x * 2),
        lambda L, s: setattr(s["y"], "requires_grad", True),
        "you can only change requires_grad flags of leaf variables.",
    ),
    "requires_grad_assigned_false_on_non_leaf": (
        lambda L: _with(L, lambda x: x * 2),
        lambda L, s: setattr(s["y"], "requires_grad", False),
        "you can only change requires_grad flags of leaf variables. If you want to use a "
        "computed variable in a subgraph that doesn't require differentiation use "
        "var_no_grad = var.detach().",
    ),
    "requires_grad_assigned_on_int": (
        lambda L: {"i": L.arange(4)},
        lambda L, s: setattr(s["i"], "requires_grad", True),
        "only Tensors of floating point and complex dtype can require gradients",
    ),
    "requires_grad_assigned_a_non_bool": (
        lambda L: {"t": L.ones(2)},
        lambda L, s: setattr(s["t"], "requires_grad", 1),
        "requires_grad must be a bool",
    ),
    "requires_grad_on_int_method": (
        lambda L: {"i": L.arange(4)},
        lambda L, s: s["i"].requires_grad_(),
        "only Tensors of floating point dtype can require gradients",
    ),
    "requires_grad_on_bool_method": (
        lambda L: {"i": L.tensor([True])},
        lambda L, s: s["i"].requires_grad_(True),
        "only Tensors of floating point dtype can require gradients",
    ),
    "requires_grad_on_int_arange": (
        lambda L: {},
        lambda L, s: L.arange(4, requires_grad=True),
        "Only Tensors of floating point and complex dtype can require gradients",
    ),
    "requires_grad_on_int_tensor": (
        lambda L: {},
        lambda L, s: L.tensor([1, 2], requires_grad=True),
        "Only Tensors of floating point and complex dtype can require gradients",
    ),
    "requires_grad_on_bool_tensor": (
        lambda L: {},
        lambda L, s: L.tensor([True, False], requires_grad=True),
        "Only Tensors of floating point and complex dtype can require gradients",
    ),
    "requires_grad_on_int_zeros": (
        lambda L: {},
        lambda L, s: L.zeros(2, dtype=L.dt("int64"), requires_grad=True),
        "Only Tensors of floating point and complex dtype can require gradients",
    ),
    "retain_grad_without_requires_grad": (
        lambda L: {"t": L.ones(2)},
        lambda L, s: s["t"].retain_grad(),
        "can't retain_grad on Tensor that has requires_grad=False",
    ),
    "assign_grad_of_other_size": (
        _x,
        lambda L, s: L.set_grad(s["x"], L.ones((2, 2))),
        "attempting to assign a gradient of size '[2, 2]' to a tensor of size '[4]'. Please "
        "ensure that the gradient and the tensor are the same size",
    ),
    **{
        f"assign_grad_of_{dtype}": (
            lambda L, other=other: {"x": L.arange(4.0, dtype=L.dt(other), requires_grad=True)},
            lambda L, s, dtype=dtype: L.set_grad(s["x"], L.ones(4, dtype=L.dt(dtype))),
            f"attempting to assign a gradient with dtype '{cpp}' to a tensor with grad_dtype "
            f"'{legacy}'. The gradient must match the tensor's grad_dtype (defaults to the "
            "tensor's dtype). You can set the tensor's grad_dtype attribute with a specific "
            "dtype, or None to allow any dtype. Set grad_dtype with caution. Diverging the "
            "dtypes of a tensor and its gradient may break downstream systems that assume they "
            "match.",
        )
        for dtype, cpp, other, legacy in [
            ("float32", "float", "float64", "Double"),
            ("float64", "double", "float32", "Float"),
            ("float16", "c10::Half", "float32", "Float"),
            ("int64", "long int", "float16", "Half"),
            ("int32", "int", "float32", "Float"),
            ("int16", "short int", "float32", "Float"),
            ("int8", "signed char", "float32", "Float"),
            ("uint8", "unsigned char", "float32", "Float"),
            ("bool", "bool", "float32", "Float"),
        ]
    },
    # 5. leaving the graph
    "numpy_requires_grad": (
        _x,
        lambda L, s: s["x"].numpy(),
        "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.",
    ),
    "numpy_non_leaf": (
        lambda L: _with(L, lambda x: x * 2),
        lambda L, s: s["y"].numpy(),
        "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.",
    ),
    "item_of_four": (
        _x,
        lambda L, s: s["x"].item(),
        "a Tensor with 4 elements cannot be converted to Scalar",
    ),
    "item_of_none": (
        lambda L: {},
        lambda L, s: L.zeros(0).item(),
        "a Tensor with 0 elements cannot be converted to Scalar",
    ),
    "float_of_four": (
        _x,
        lambda L, s: float(s["x"].detach()),
        "only one element tensors can be converted to Python scalars",
    ),
    "bool_of_four": (
        _x,
        lambda L, s: bool(s["x"] > 0),
        "Boolean value of Tensor with more than one value is ambiguous",
    ),
    # 6. in-place ops on leaves and the version counter
    "leaf_add_": (
        _x,
        lambda L, s: s["x"].add_(1),
        "a leaf Variable that requires grad is being used in an in-place operation.",
    ),
    "leaf_zero_": (
        _x,
        lambda L, s: s["x"].zero_(),
        "a leaf Variable that requires grad is being used in an in-place operation.",
    ),
    "leaf_copy_": (
        _x,
        lambda L, s: s["x"].copy_(L.ones(4)),
        "a leaf Variable that requires grad is being used in an in-place operation.",
    ),
    "leaf_iadd": (
        _x,
        lambda L, s: s["x"].__iadd__(1),
        "a leaf Variable that requires grad is being used in an in-place operation.",
    ),
    "leaf_setitem": (
        _x,
        lambda L, s: s["x"].__setitem__(0, 5.0),
        "a view of a leaf Variable that requires grad is being used in an in-place operation.",
    ),
    "leaf_slice_mul_": (
        _x,
        lambda L, s: s["x"][1:3].mul_(2),
        "a view of a leaf Variable that requires grad is being used in an in-place operation.",
    ),
    "leaf_view_sub_": (
        _x,
        lambda L, s: s["x"].view(2, 2).sub_(1),
        "a view of a leaf Variable that requires grad is being used in an in-place operation.",
    ),
    "saved_input_add_": (
        lambda L: _saved_modified(L, lambda y: y.add_(1)),
        lambda L, s: s["z"].backward(),
        _modified(", which is output 0 of Add,"),
    ),
    "saved_input_detached_zero_": (
        lambda L: _saved_modified(L, lambda y: y.detach().zero_(), "sin"),
        lambda L, s: s["z"].backward(),
        _modified(", which is output 0 of Mul,"),
    ),
    "saved_input_setitem": (
        lambda L: _saved_modified(L, lambda y: y.__setitem__(0, 1.0)),
        lambda L, s: s["z"].backward(),
        _modified(", which is output 0 of torch::autograd::CopySlices,"),
    ),
    "saved_input_copy_": (
        lambda L: _saved_modified(L, lambda y: y.copy_(L.ones(4))),
        lambda L, s: s["z"].backward(),
        _modified(", which is output 0 of torch::autograd::CopyBackwards,"),
    ),
    "saved_input_zero_": (
        lambda L: _saved_modified(L, lambda y: y.zero_()),
        lambda L, s: s["z"].backward(),
        _modified(", which is output 0 of Zero,"),
    ),
    "saved_input_twice": (
        lambda L: _saved_modified(L, lambda y: (y.sub_(1), y.mul_(2)), "sin"),
        lambda L, s: s["z"].backward(),
        _modified(", which is output 0 of Mul,", version=2),
    ),
    "saved_output_exp": (
        lambda L: _with(L, lambda x: x.exp().add_(1).sum()),
        lambda L, s: s["y"].backward(),
        _modified(", which is output 0 of Exp,"),
    ),
    "saved_output_tanh": (
        lambda L: _with(L, lambda x: _detach_write(x.tanh()).sum()),
        lambda L, s: s["y"].backward(),
        _modified(", which is output 0 of Tanh,"),
    ),
    "saved_leaf_under_no_grad": (
        lambda L: _leaf_written(L),
        lambda L, s: s["p"].backward(),
        _modified(""),
    ),
    "saved_constant_written": (
        lambda L: _constant_written(L),
        lambda L, s: s["p"].backward(),
        _modified(""),
    ),
    "saved_in_grad": (
        lambda L: _saved_modified(L, lambda y: y.add_(1)),
        lambda L, s: L.autograd.grad(s["z"], s["x"]),
        _modified(", which is output 0 of Add,"),
    ),
    # 7. autograd.grad
    "grad_unused_input": (
        lambda L: {"v": L.arange(3.0, requires_grad=True), "w": L.ones(2, requires_grad=True)},
        lambda L, s: L.autograd.grad((s["v"] ** 3).sum(), [s["v"], s["w"]]),
        "The differentiated Tensor at index 1 appears to not have been used in the graph. "
        "Set allow_unused=True if this is the desired behavior.",
    ),
    "grad_unused_non_leaf": (
        lambda L: _with(L, lambda x: x * 2),
        lambda L, s: L.autograd.grad((s["x"] * s["x"]).sum(), [s["y"]]),
        "The differentiated Tensor at index 0 appears to not have been used in the graph. "
        "Set allow_unused=True if this is the desired behavior.",
    ),
    "grad_no_outputs": (
        _x,
        lambda L, s: L.autograd.grad([], [s["x"]]),
        "The differentiated Tensor at index 0 appears to not have been used in the graph. "
        "Set allow_unused=True if this is the desired behavior.",
    ),
    "grad_input_without_grad": (
        _x,
        lambda L, s: L.autograd.grad((s["x"] ** 3).sum(), [L.ones(3)]),
        "One of the differentiated Tensors does not require grad",
    ),
    "grad_empty_inputs": (
        _x,
        lambda L, s: L.autograd.grad((s["x"] ** 3).sum(), []),
        "`inputs` argument to `grad()` cannot be empty.",
    ),
    "grad_materialize_not_allow_unused": (
        lambda L: {"v": L.arange(3.0, requires_grad=True), "w": L.ones(2, requires_grad=True)},
        lambda L, s: L.autograd.grad(
            (s["v"] ** 3).sum(), [s["v"], s["w"]], allow_unused=False, materialize_grads=True
        ),
        "Expected allow_unused to be True or not passed when materialize_grads=True, but got: "
        "allow_unused=False.",
    ),
    "backward_empty_inputs": (
        _x,
        lambda L, s: (s["x"] * s["x"]).sum().backward(inputs=[]),
        "`inputs` argument to `backward()` cannot be empty.",
    ),
    "backward_input_without_grad": (
        _x,
        lambda L, s: (s["x"] * s["x"]).sum().backward(inputs=[L.ones(3)]),
        "can't retain_grad on Tensor that has requires_grad=False",
    ),
}


def _detach_write(t: Any) -> Any:
    t.detach().zero_()
    return t


def _leaf_written(L: Lib) -> dict[str, Any]:
    x = L.arange(4.0, requires_grad=True)
    w = L.ones(4, requires_grad=True)
    p = (w * w).sum()
    with L.no_grad():
        w.add_(1)
    return {"x": x, "w": w, "p": p}


def _constant_written(L: Lib) -> dict[str, Any]:
    x = L.arange(4.0, requires_grad=True)
    c = L.ones(4)
    p = (x * c).sum()
    c.mul_(3)
    return {"x": x, "c": c, "p": p}


def _state(L: Lib, s: dict[str, Any]) -> list[Any]:
    """What a failed call must leave unchanged: values, versions, grads, flags."""
    out: list[Any] = []
    for name, t in sorted(s.items()):
        grad = t.grad if t.is_leaf or t.retains_grad else None
        out.append((name, repr(t.detach()), L.version(t), t.requires_grad, repr(grad)))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_error_matches_torch(name: str) -> None:
    setup, call, text = CASES[name]
    states: dict[bool, tuple[list[Any], list[Any]]] = {}

    def scenario(L: Lib, show: Any) -> None:
        s = setup(L)
        before = _state(L, s)
        L.attempt(lambda: call(L, s))
        states[L.is_torch] = (before, _state(L, s))

    record = same(scenario)
    assert record[0][0] == "error", record
    assert record[0][2] == text  # the expected text is torch's (same() compared them)
    before, after = states[False]
    assert after == before, "a failed call changed the engine's state"


@pytest.mark.parametrize("name", sorted(CASES))
def test_error_is_typed(name: str) -> None:
    setup, call, text = CASES[name]
    lib = Lib(E, [])
    s = setup(lib)
    with pytest.raises(EngineError) as info:
        call(lib, s)
    assert str(info.value) == text
    assert info.value.torch_type in {"RuntimeError", "ValueError", "TypeError", "IndexError"}
    assert isinstance(info.value, FailedPrecondition | InvalidArgument)


def test_state_errors_are_failed_preconditions() -> None:
    """Errors that depend on the graph's state are FailedPrecondition, not InvalidArgument."""
    for name in ("freed_pow", "saved_input_add_", "leaf_add_", "requires_grad_false_on_non_leaf"):
        setup, call, _ = CASES[name]
        lib = Lib(E, [])
        s = setup(lib)
        with pytest.raises(FailedPrecondition):
            call(lib, s)


def test_python_attribute_error_on_missing_grad() -> None:
    def scenario(L: Lib, show: Any) -> None:
        w = L.ones(3, requires_grad=True)
        L.attempt(lambda: w.grad.zero_())

    assert same(scenario) == [
        ("error", "AttributeError", "'NoneType' object has no attribute 'zero_'")
    ]


def test_graph_intact_after_a_rejected_gradient() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = x.exp() * x
        L.attempt(lambda: y.backward(gradient=L.ones(3)))
        L.attempt(lambda: y.backward())
        show(x.grad)
        y.backward(gradient=L.ones(4))
        show(x.grad)

    same(scenario)


def test_failed_second_backward_keeps_grad_object() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = 2 * L.dot(x, x)
        y.backward()
        g = x.grad
        L.attempt(lambda: y.backward())
        show(x.grad, x.grad is g)

    same(scenario)


def test_failed_pass_with_a_good_root_changes_nothing() -> None:
    """Two outputs, one through freed buffers: the good one's gradient is not applied either."""

    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        bad = (x * x).sum()
        bad.backward()
        L.set_grad(x, None)
        good = (x * 3).sum()
        L.attempt(lambda: L.autograd.backward([good, bad]))
        show(x.grad)

    same(scenario)


def test_engine_messages_match_torch_verbatim() -> None:
    """Spot check that ``same`` compares torch's real text (not just engine with engine)."""

    def scenario(L: Lib, show: Any) -> None:
        L.attempt(lambda: L.tensor(1.0).backward())

    assert run(torch, scenario) == [
        (
            "error",
            "RuntimeError",
            "element 0 of tensors does not require grad and does not have a grad_fn",
        )
    ]
