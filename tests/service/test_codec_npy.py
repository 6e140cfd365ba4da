"""``.npy`` bodies read as they arrive (``codec.NpyReader``) against ``numpy.load``, and the
engine adopting the array it fills (``engine.creation.Adopted``)."""

from __future__ import annotations

import io
import itertools
import weakref
from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from engine.backend import HOST_BLOCKS
from engine.creation import Adopted, tensor
from engine.dtypes import DTYPES
from engine.errors import InvalidArgument
from service import codec
from service.errors import RequestTooLarge

LIMIT = 1 << 20


def _npy(array: Any, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array(buffer, numpy.asanyarray(array), version, allow_pickle=False)
    return buffer.getvalue()


def _read(raw: bytes, cuts: list[int] | None = None, limit: int = LIMIT) -> numpy.ndarray:
    """The reader's array for ``raw`` fed in pieces split at ``cuts``."""
    reader = codec.NpyReader(limit)
    bounds = [0, *sorted(cuts or []), len(raw)]
    for start, end in itertools.pairwise(bounds):
        reader.feed(raw[start:end])
    return reader.array()


def _same(ours: numpy.ndarray, theirs: numpy.ndarray) -> None:
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert ours.dtype.isnative
    assert ours.flags.f_contiguous == theirs.flags.f_contiguous
    assert ours.flags.c_contiguous == theirs.flags.c_contiguous
    assert numpy.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")


def _owns_its_memory(array: numpy.ndarray) -> bool:
    return array.base is None and array.flags.writeable


@st.composite
def arrays(draw: st.DrawFn) -> numpy.ndarray:
    name = draw(st.sampled_from(sorted(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
    size = int(numpy.prod(shape))
    values = numpy.arange(size).reshape(shape) * 3 - 7
    array = values.astype(DTYPES[name]) if name != "bool" else values % 2 == 0
    if draw(st.booleans()):
        array = array.astype(array.dtype.newbyteorder(">"))
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        array = numpy.asfortranarray(array)
    elif layout == "strided" and array.ndim:
        array = array[::-1] if array.ndim == 1 else array.T[::2]  # saved as C or F order
    return array


@settings(max_examples=200, deadline=None)
@given(array=arrays(), data=st.data())
def test_pieces_of_any_size_give_what_numpy_load_gives(array: Any, data: st.DataObject) -> None:
    raw = _npy(array)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=6))
    ours = _read(raw, cuts)
    _same(ours, codec.from_npy(raw))
    assert numpy.array_equal(ours, array)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_format_version(version: tuple[int, int]) -> None:
    array = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    _same(_read(_npy(array, version), [5, 9, 70]), array)


def test_the_array_is_the_reader_s_own_for_the_engine_to_adopt() -> None:
    for array in (numpy.ones((4, 5), "<f4"), numpy.asfortranarray(numpy.ones((4, 5), "<i8"))):
        ours = _read(_npy(array), [3, 100])
        assert _owns_its_memory(ours)
        assert tensor(Adopted(ours)).data is ours
    # Converted to native order, the converted array is new and still the reader's alone.
    assert _owns_its_memory(_read(_npy(numpy.ones(3, ">f8"))))


def test_trailing_bytes_are_ignored_as_numpy_load_does() -> None:
    raw = _npy(numpy.arange(4.0)) + b"trailing"
    _same(_read(raw, [len(raw) - 5]), codec.from_npy(raw))


def _header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


BAD_BODIES = [
    b"",
    b"not npy",
    b"\x93NUMPY",  # the magic, cut short
    _npy(numpy.arange(4.0))[:20],  # a header cut short
    b"\x93NUMPY\x09\x00" + _npy(numpy.arange(4.0))[8:],  # an unknown version
    b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',}" + b" " * 64,  # a header that does not parse
    _npy(numpy.array(["a", "b"])),  # unicode
    _npy(numpy.array([1 + 2j])),  # complex
    _npy(numpy.zeros(2, [("a", "<f4"), ("b", "<i4")])),  # structured
    _header((0, 10**30)),  # no bytes, but a dimension past int64
    _header((0, 2**62, 2**62)),  # no bytes, but more elements than numpy can count
]


@pytest.mark.parametrize("raw", BAD_BODIES)
def test_bodies_that_are_not_a_supported_npy_fail_as_from_npy_does(raw: bytes) -> None:
    with pytest.raises(InvalidArgument) as expected:
        codec.from_npy(raw)
    for cuts in ([], [1], [7, 11]):
        with pytest.raises(InvalidArgument) as got:
            _read(raw, [c for c in cuts if c <= len(raw)])
        assert str(got.value) == str(expected.value)


def test_object_arrays_are_refused_without_unpickling() -> None:
    raw = _header((1,), "|O") + b"\x80\x04pickle"
    with pytest.raises(InvalidArgument, match="Object arrays cannot be loaded"):
        _read(raw)


def test_a_body_cut_short_is_refused() -> None:
    raw = _npy(numpy.arange(1000, dtype=numpy.float64))
    for end in (len(raw) - 1, len(raw) - 4000, 200):
        with pytest.raises(InvalidArgument, match=r"invalid \.npy body: EOF"):
            _read(raw[:end], [end // 2])
    with pytest.raises(InvalidArgument, match=r"invalid \.npy body"):
        codec.from_npy(raw[:-1])  # the general path says so too


@pytest.mark.parametrize("descr", ["<f8", "<c16"])
def test_an_array_over_the_limit_is_never_allocated(descr: str) -> None:
    """A header may claim any size (numpy.load would try to allocate it): past the limit the
    body's bytes are only counted, to tell a short body from one over the limit."""
    expected = (1 << 47) * numpy.dtype(descr).itemsize
    message = rf"invalid \.npy body: EOF: reading array data, expected {expected} bytes got 64"
    with pytest.raises(InvalidArgument, match=message):
        _read(_header((1 << 47,), descr) + b"\0" * 64, [3, 140])
    raw = _npy(numpy.zeros(100))
    with pytest.raises(RequestTooLarge, match="array of 800 bytes exceeds the limit of 799"):
        _read(raw, [50], limit=799)
    _same(_read(raw, [50], limit=800), numpy.zeros(100))


def test_adopted_arrays_are_copied_when_they_are_not_their_holder_s_alone() -> None:
    base = numpy.arange(6.0)
    view = base[1:]
    assert tensor(Adopted(view)).data is not view  # a view: its base may change
    frozen = numpy.frombuffer(b"\0" * 16, numpy.float64)
    copied = tensor(Adopted(frozen)).data
    assert copied is not frozen and copied.flags.writeable
    converted = tensor(Adopted(base), dtype="float32")
    assert converted.data.dtype == numpy.float32 and converted.data is not base
    assert tensor(Adopted(base), requires_grad=True).requires_grad


def test_large_arrays_are_read_into_reused_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``HOST_BLOCKS.min_bytes`` a C-ordered body's array is a block kept for reuse
    (``engine.backend.HostBlocks``): the engine adopts it whole, and the next body of that
    size gets it again once the tensor is gone."""
    monkeypatch.setattr(HOST_BLOCKS, "min_bytes", 4000)
    array = numpy.arange(1000, dtype=numpy.float32).reshape(10, 100)
    ours = _read(_npy(array), [5, 300, 2000])
    _same(ours, array)
    assert HOST_BLOCKS.holds(ours)
    adopted = tensor(Adopted(ours))
    assert adopted.data is ours
    block = weakref.ref(ours.base)
    del ours
    again = _read(_npy(array + 1), [7])
    assert again.base is not block()  # the tensor still holds it
    assert numpy.array_equal(adopted.data, array)
    del adopted
    _same(last := _read(_npy(array * 2)), array * 2)
    assert last.base is block()
    fortran = _read(_npy(numpy.asfortranarray(array)))
    assert _owns_its_memory(fortran) and not HOST_BLOCKS.holds(fortran)
    HOST_BLOCKS.release()
