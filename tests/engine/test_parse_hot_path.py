"""``parse``'s hot path (the common op command) against the general parser, ``parse_any``:
the same command, or the same error, for every body, whether the name caches know its
names or not."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import parsing
from engine.commands import Op, Ref
from engine.errors import EngineError
from engine.parsing import parse, parse_any


def _outcome(fn: Any, body: Any) -> tuple[str, Any]:
    try:
        command = fn(body)
    except EngineError as exc:
        return "error", (type(exc).__name__, str(exc))
    # Equal, and of equal types (1 == 1.0 == True): what a command holds, typed.
    return "ok", (command, [(type(v), v) for v in getattr(command, "inputs", ())])


def _same(body: Any) -> tuple[str, Any]:
    general = _outcome(parse_any, body)
    assert _outcome(parse, body) == general
    return general


NAMES = ["y", "x_1", "%3", "", "1y", "a" * 65, "é"]
VALUES = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from([0, 1, -2, 2.5, -0.0, float("nan"), True, False, 10**40]),
    st.none(),
    st.just({"grad_of": "y"}),
    st.just(["y", "y"]),
    st.just([1.0]),
)
FIELDS = {
    "kind": st.sampled_from(["op", "op", "op", "create", 1, None]),
    "op": st.sampled_from(["mul", "sin", "no_such", 3, None]),
    "inputs": st.one_of(st.lists(VALUES, max_size=3), st.sampled_from(["y", None, 2])),
    "name": st.one_of(st.sampled_from(NAMES), st.none(), st.just(5)),
    "names": st.just(["a", "b"]),
    "attrs": st.sampled_from([{}, {"dim": 0}, [], None]),
    "no_grad": st.sampled_from([True, False, None, 1]),
    "extra": st.just(1),
}


@st.composite
def _body(draw: st.DrawFn) -> dict[Any, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=6))
    body = {key: draw(FIELDS[key]) for key in ("kind", "op", "inputs", *keys)}
    if draw(st.booleans()):
        body[draw(st.sampled_from([1, ("t",)]))] = 0  # a key that is no string
    return body


@settings(max_examples=400, deadline=None)
@given(body=_body(), clear=st.booleans())
def test_the_hot_path_parses_as_the_general_parser(body: dict[Any, Any], clear: bool) -> None:
    if clear:  # names never seen: the hot path hands the body over
        parsing._NAMES.clear()
        parsing._REFS.clear()
    _same(body)
    _same(body)  # and once its names are known


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "op", "op": "mul", "inputs": ["y", 2.0], "name": "y"},
        {"kind": "op", "op": "sin", "inputs": ["y"]},
        {"kind": "op", "op": "add", "inputs": [1, "y"], "name": "y"},
        {"kind": "op", "op": "add", "inputs": ["y", True]},
    ],
)
def test_the_common_op_commands_take_the_hot_path(
    body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _same(body)  # which also makes the names known
    assert expected[0] == "ok"

    def general(body: Any) -> Any:
        raise AssertionError("the general parser ran")

    monkeypatch.setattr(parsing, "parse_any", general)
    command = parse(body)
    assert type(command) is Op and command == expected[1][0]
    assert all(type(v) is Ref or type(v) in (int, float, bool) for v in command.inputs)


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "op", "op": "mul", "inputs": ["y", 2.0], "name": None},
        {"kind": "op", "op": "mul", "inputs": ["y", 2.0], "name": "y", "extra": 1},
        {"kind": "op", "op": "mul", "inputs": ["y", 2.0], "attrs": {}},
        {"kind": "op", "op": "mul", "inputs": ["y", None], "name": "y"},
        {"kind": "op", "op": "mul", "inputs": ["y", "1y"], "name": "y"},
        {"kind": "op", "op": "mul", "inputs": ["y", {"grad_of": "y"}], "name": "y"},
        {"kind": "op", "op": "cat", "inputs": [["y", "y"]], "name": "y"},
        {"kind": "op", "op": 7, "inputs": ["y"], "name": "y"},
        {"kind": "op", "op": "sin", "inputs": ["y"], "name": "1y"},
    ],
)
def test_other_bodies_are_the_general_parsers(body: dict[str, Any]) -> None:
    parse_any({"kind": "op", "op": "sin", "inputs": ["y"], "name": "y"})  # known names
    _same(body)


class Kind(str):
    """A str subclass, as ``numpy.str_`` is: no command kind (review)."""


def test_a_kind_that_is_a_str_subclass_is_refused_alike() -> None:
    parse_any({"kind": "op", "op": "sin", "inputs": ["y"], "name": "y"})
    outcome = _same({"kind": Kind("op"), "op": "sin", "inputs": ["y"], "name": "y"})
    assert outcome[0] == "error" and "unknown command kind" in outcome[1][1]
