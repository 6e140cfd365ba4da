"""Large host arrays kept for reuse (``engine.backend.HostBlocks``): a block is handed out
again only once no view of it is alive, and a tensor adopts a whole block without a copy."""

from __future__ import annotations

import weakref
from typing import Any

import numpy
import pytest

from engine import backend
from engine.backend import HostBlocks
from engine.creation import Adopted, tensor
from engine.parsing import parse
from engine.session import SessionManager

F32 = numpy.dtype(numpy.float32)


def _block_of(array: numpy.ndarray) -> int:
    return id(array.base)


def test_small_arrays_are_numpy_s_own() -> None:
    blocks = HostBlocks(min_bytes=4000, keep_bytes=1 << 20)
    small = blocks.empty((999,), F32)
    assert small.base is None and not blocks.holds(small)
    big = blocks.empty((10, 100), F32)
    assert big.shape == (10, 100) and big.dtype == F32
    assert big.flags.c_contiguous and big.flags.writeable and blocks.holds(big)


def test_a_block_is_reused_only_when_no_view_of_it_is_alive() -> None:
    blocks = HostBlocks(min_bytes=1000, keep_bytes=1 << 20)
    first = blocks.empty((1000,), F32)
    key = _block_of(first)
    second = blocks.empty((1000,), F32)
    assert _block_of(second) != key  # in use
    view = first[10:].reshape(10, 99)  # a view outlives the array it was taken from
    del first
    third = blocks.empty((1000,), F32)
    assert _block_of(third) != key
    assert not blocks.holds(view)  # part of a block: not a block handed out whole
    del view
    again = blocks.empty((1000,), F32)
    assert _block_of(again) == key
    other_size = blocks.empty((2000,), F32)
    assert _block_of(other_size) not in (key, _block_of(second), _block_of(third))


def test_what_is_kept_stays_under_the_bound_and_release_drops_the_free_blocks() -> None:
    blocks = HostBlocks(min_bytes=1000, keep_bytes=10_000)
    held = [blocks.empty((1000,), F32) for _ in range(3)]  # 12000 bytes: two kept
    assert [blocks.holds(a) for a in held] == [True, True, False]
    del held[0]
    blocks.release()
    assert [blocks.holds(a) for a in held] == [True, False]
    block = weakref.ref(held[0].base)
    del held
    blocks.release()
    assert block() is None  # given back


def test_a_tensor_adopts_a_whole_block_and_copies_anything_less(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backend, "HOST_BLOCKS", HostBlocks(min_bytes=1000))
    monkeypatch.setattr("engine.creation.HOST_BLOCKS", backend.HOST_BLOCKS)
    array = backend.HOST_BLOCKS.empty((1000,), F32)
    array[:] = 1.5
    assert tensor(Adopted(array)).data is array
    part = array[1:]
    assert tensor(Adopted(part)).data is not part
    frozen = backend.HOST_BLOCKS.empty((1000,), F32)
    frozen.flags.writeable = False
    assert tensor(Adopted(frozen)).data is not frozen
    converted = tensor(Adopted(array), dtype="float64").data
    assert converted.dtype == numpy.float64 and converted.base is None


def test_past_the_bound_an_array_is_numpy_s_own_and_adopted_without_a_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backend, "HOST_BLOCKS", HostBlocks(min_bytes=1000, keep_bytes=10_000))
    monkeypatch.setattr("engine.creation.HOST_BLOCKS", backend.HOST_BLOCKS)
    held = [backend.HOST_BLOCKS.empty((1000,), F32) for _ in range(3)]  # the third: unkept
    assert held[2].base is None
    assert tensor(Adopted(held[2])).data is held[2]


def test_session_values_never_share_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tensors made from blocks keep their values while other blocks come and go, the block
    of a released name coming back only once nothing of it (a view op's output) is alive."""
    blocks = HostBlocks(min_bytes=1000)
    monkeypatch.setattr("engine.creation.HOST_BLOCKS", blocks)
    manager = SessionManager()
    sid, token = manager.create()
    session = manager.get(sid, token)

    def run(*commands: dict[str, Any]) -> None:
        manager.execute(sid, token, [parse(c) for c in commands])

    def upload(name: str, value: float) -> None:
        array = blocks.empty((1000,), F32)
        array[:] = value
        run({"kind": "create", "name": name, "data": Adopted(array)})
        assert session.tensors[name].data is array

    try:
        upload("a", 1.0)
        a_block = weakref.ref(session.tensors["a"].data.base)
        upload("b", 2.0)
        run({"kind": "op", "op": "reshape", "inputs": ["a"], "attrs": {"shape": [10, 100]},
             "name": "view"})  # fmt: skip
        run({"kind": "release", "names": ["a"]})
        upload("c", 3.0)  # "a" is gone, its reshaped view is not
        assert numpy.all(session.tensors["view"].data == 1.0)
        assert session.tensors["c"].data.base is not a_block()
        run({"kind": "release", "names": ["view"]})
        upload("d", 4.0)
        assert session.tensors["d"].data.base is a_block()  # free at last
        for name, value in (("b", 2.0), ("c", 3.0), ("d", 4.0)):
            assert numpy.all(session.tensors[name].data == value)
    finally:
        manager.shutdown()
