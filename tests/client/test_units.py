"""The client's pieces without a server: URLs, errors, inference and exact local values."""

from __future__ import annotations

import itertools
import pickle
import socket
from typing import Any

import gradserve
import numpy
import pytest
from gradserve import infer, known
from gradserve.errors import STATUS, Error
from gradserve.http_transport import _dropped, _problem
from gradserve.transport import parse_url

from service import errors as service_errors

real = pytest.importorskip("torch")


def test_urls() -> None:
    assert str(parse_url("http://h:1/prefix/")) == "http://h:1/prefix"
    assert parse_url("https://h").port == 443
    assert parse_url("grpc://[::1]:9").target == "[::1]:9"
    assert parse_url("grpcs://h").secure
    for bad in ("ftp://h", "http://", "grpc://h:1/path", "http://h:port"):
        with pytest.raises(Error) as caught:
            parse_url(bad)
        assert isinstance(caught.value, ValueError)


def test_the_status_table_is_the_services() -> None:
    for code, row in service_errors.TABLE.items():
        assert STATUS[code] == row.http


def test_error_is_its_torch_type_and_survives_pickling() -> None:
    error = Error("invalid_argument", "bad dim", torch_type="IndexError", command_index=3)
    assert isinstance(error, IndexError) and isinstance(error, gradserve.Error)
    assert error.status == 400 and "bad dim [invalid_argument]" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and copy.command_index == 3
    assert not isinstance(Error("internal", "x"), IndexError)
    assert isinstance(Error("internal", "x", torch_type="Unheard"), gradserve.Error)


def test_problem_bodies_and_proxy_pages() -> None:
    body = b'{"code": "not_found", "detail": "no tensor", "status": 404, "command_index": 2}'
    error = _problem(404, body)
    assert (error.code, error.detail, error.command_index, error.status) == (
        "not_found", "no tensor", 2, 404
    )  # fmt: skip
    page = _problem(502, b"<html>bad gateway</html>")
    assert page.code == "unavailable" and "502" in page.detail


def test_a_connection_the_server_closed_is_seen_before_reuse() -> None:
    a, b = socket.socketpair()
    try:
        assert not _dropped(a)
        b.close()
        assert _dropped(a)
    finally:
        a.close()


# ----- inference against PyTorch -----

SHAPES = [(), (1,), (3,), (2, 3), (2, 1), (1, 3), (4, 2, 3)]
DTYPES = ["bool", "int64", "int32", "float32", "float64"]


def _torch(shape: tuple[int, ...], dtype: str) -> Any:
    return real.zeros(shape, dtype=getattr(real, dtype))


@pytest.mark.parametrize("op", ["add", "mul", "div", "lt", "maximum", "logical_and"])
def test_binary_shapes_and_dtypes_are_torchs(op: str) -> None:
    fn = getattr(real, op)
    for (sa, da), (sb, db) in itertools.product(
        itertools.product(SHAPES[:5], DTYPES), itertools.product(SHAPES[2:], DTYPES)
    ):
        got = infer.infer(op, [infer.Meta(sa, da), infer.Meta(sb, db)], {}, 1)[0]
        try:
            out = fn(_torch(sa, da), _torch(sb, db))
        except RuntimeError:
            assert got[0] is None or got[1] is None or op in ("add", "mul"), (sa, da, sb, db)
            continue
        assert got == (tuple(out.shape), str(out.dtype).removeprefix("torch.")), (sa, da, sb, db)


@pytest.mark.parametrize("scalar", [2, 2.5, True])
def test_scalar_promotion_is_torchs(scalar: Any) -> None:
    for shape, dtype in itertools.product([(), (3,)], DTYPES[1:]):
        got = infer.infer("mul", [infer.Meta(shape, dtype), scalar], {}, 1)[0]
        out = _torch(shape, dtype) * scalar
        assert got == (tuple(out.shape), str(out.dtype).removeprefix("torch.")), (shape, dtype)


def test_matmul_and_shape_ops_are_torchs() -> None:
    pairs = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3,)),
             ((3,), (5, 3, 4)), ((5, 2, 3), (1, 3, 4)), ((2, 3), (4,))]  # fmt: skip
    for a, b in pairs:
        got = infer.infer("matmul", [infer.Meta(a, "float32"), infer.Meta(b, "float32")], {}, 1)
        try:
            expected = tuple((real.zeros(a) @ real.zeros(b)).shape)
        except RuntimeError:
            assert got[0][0] is None
            continue
        assert got[0][0] == expected, (a, b)
    x = real.zeros(4, 1, 3)
    cases: list[tuple[str, dict[str, Any], Any]] = [
        ("reshape", {"shape": [-1, 6]}, x.reshape(-1, 6)),
        ("transpose", {"dim0": 0, "dim1": -1}, x.transpose(0, -1)),
        ("permute", {"dims": [2, 0, 1]}, x.permute(2, 0, 1)),
        ("squeeze", {}, x.squeeze()),
        ("squeeze", {"dim": 0}, x.squeeze(0)),
        ("unsqueeze", {"dim": -1}, x.unsqueeze(-1)),
        ("flatten", {"start_dim": 1}, x.flatten(1)),
        ("expand", {"shape": [2, 4, 5, 3]}, x.expand(2, 4, 5, 3)),
        ("sum", {"dim": [0, 2], "keepdim": True}, x.sum((0, 2), keepdim=True)),
        ("index", {"key": [1, {"slice": [None, None, 2]}, None]}, x[1, ::2, None]),
        ("index", {"key": ["...", 0]}, x[..., 0]),
    ]
    for op, attrs, out in cases:
        assert infer.infer(op, [infer.Meta(tuple(x.shape), "float32")], attrs, 1)[0] == (
            tuple(out.shape), "float32"
        ), (op, attrs)  # fmt: skip


# ----- exact local values against PyTorch -----


def test_local_values_are_torchs_bit_for_bit() -> None:
    rng = numpy.random.default_rng(0)
    values = numpy.concatenate(
        [rng.normal(size=40) * 10.0 ** rng.integers(-30, 30, size=40), [0.0, -0.0, 1e-40, 3e38]]
    )
    scalars = [2, -3, 0.5, 1000, 0.1, 1e-3, 2**30]
    for dtype in ("float32", "float64"):
        x = values.astype(dtype)
        t = real.from_numpy(x.copy())
        for op, s in itertools.product(["add", "sub", "mul", "div", "lt", "ge", "eq"], scalars):
            for args, targs in (([x, s], [t, s]), ([s, x], [s, t])):
                got = known.evaluate(op, args, {})
                if got is None:
                    continue
                fn = getattr(real, op) if op not in ("sub", "div") else None
                if fn is None:
                    a, b = targs
                    expected = (a - b) if op == "sub" else (a / b)
                else:
                    expected = (
                        fn(*targs) if isinstance(targs[0], real.Tensor) else fn(targs[1], targs[0])
                    )
                    if not isinstance(targs[0], real.Tensor) and op in ("lt", "ge"):
                        continue  # 2 < x is x.__gt__(2): never reaches evaluate reversed
                numpy.testing.assert_array_equal(got, expected.numpy(), err_msg=f"{op} {s} {dtype}")
        for v in x:
            one = numpy.array(v, dtype=dtype)
            for op in ("norm", "sum", "mean", "neg", "abs"):
                got = known.evaluate(op, [one], {})
                if got is not None:
                    expected = getattr(real.from_numpy(one.copy()), op)()
                    numpy.testing.assert_array_equal(got, expected.numpy(), err_msg=f"{op} {v}")


def test_local_values_refuse_what_is_not_certain() -> None:
    x = numpy.array([1.5, 2.5], dtype="float32")
    assert known.evaluate("mul", [x, 0.1], {}) is None  # 0.1 is not a float32
    assert known.evaluate("sum", [x], {}) is None  # order of summation
    assert known.evaluate("exp", [x], {}) is None  # not correctly rounded everywhere
    assert known.evaluate("mul", [x, x.astype("float64")], {}) is None
    tiny = numpy.array(1e-20, dtype="float32")
    assert known.evaluate("mul", [tiny, tiny], {}) is None  # subnormal: a GPU may flush it
    assert known.evaluate("norm", [numpy.array(1e30, dtype="float32")], {}) is None
