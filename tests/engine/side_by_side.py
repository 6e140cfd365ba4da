"""Run one scenario on ``torch`` and on ``engine`` and compare what each shows.

A scenario is a function ``scenario(L, show)``: ``L`` is the library (``torch`` or ``engine``
behind a thin adapter for the few spellings that differ), ``show(*values)`` records values
(tensors by ``repr``), and ``L.attempt(fn)`` records either the result or the error's type
name and text. The two records must be equal.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

import engine
from engine.errors import EngineError


class Lib:
    """``torch`` or ``engine``, with adapters where the two spell a thing differently."""

    def __init__(self, module: Any, record: list[Any]) -> None:
        self.module = module
        self.is_torch = module is torch
        self.record = record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)

    def dt(self, name: str) -> Any:
        """A dtype argument: ``torch.float64`` or ``"float64"``."""
        return getattr(torch, name) if self.is_torch else name

    def dtype_of(self, t: Any) -> str:
        return str(t.dtype).removeprefix("torch.")

    def set_grad(self, t: Any, g: Any) -> None:
        """``t.grad = g``."""
        if self.is_torch:
            t.grad = g
        else:
            t.set_grad(g)

    def version(self, t: Any) -> int:
        return int(t._version) if self.is_torch else int(t.version)

    def node(self, t: Any) -> str | None:
        """The class name of ``t.grad_fn``."""
        if t.grad_fn is None:
            return None
        return type(t.grad_fn).__name__ if self.is_torch else str(t.grad_fn.name)

    def attempt(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` and record its result or its error; return the result (None on error)."""
        try:
            result = fn()
        except Exception as e:
            if not (self.is_torch or isinstance(e, EngineError | AttributeError)):
                raise  # the engine raises only its typed errors (and Python's own on None)
            self.record.append(("error", *error_of(e)))
            return None
        self.record.append(("ok", shown(result)))
        return result


def error_of(e: BaseException) -> tuple[str, str]:
    """The torch exception class name and message an error stands for."""
    if isinstance(e, EngineError):
        return e.torch_type, str(e)
    return type(e).__name__, str(e)


def shown(value: Any) -> Any:
    if isinstance(value, torch.Tensor | engine.Tensor):
        return repr(value)
    if isinstance(value, tuple | list):
        return tuple(shown(v) for v in value)
    if isinstance(value, torch.Size):
        return tuple(value)
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    return repr(value)


Scenario = Callable[[Lib, Callable[..., None]], Any]


def run(module: Any, scenario: Scenario) -> list[Any]:
    record: list[Any] = []
    lib = Lib(module, record)

    def show(*values: Any) -> None:
        record.append(tuple(shown(v) for v in values))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's UserWarnings (non-leaf .grad, create_graph)
        scenario(lib, show)
    return record


def same(scenario: Scenario) -> list[Any]:
    """Assert that ``scenario`` shows the same on torch and on the engine; return the record."""
    expected = run(torch, scenario)
    got = run(engine, scenario)
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):
        assert g == e, f"step {i}: engine {g!r} != torch {e!r}"
    assert len(got) == len(expected)
    return got
