"""Messages to the engine's command dicts and back, without a server."""

from __future__ import annotations

import math
from typing import Any

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.commands import KINDS
from engine.dtypes import DTYPES
from engine.errors import InvalidArgument, NotFound
from engine.parsing import parse
from engine.session import Result, TensorInfo
from service import grpc_messages as messages
from service import wire
from service.errors import GENERIC_DETAIL
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc
from service.grpc_server import GradientServicer
from tests.service.grpc_support import data, ref, val


def test_the_dtype_enum_spells_every_engine_dtype() -> None:
    assert set(wire.DTYPE_ENUMS) == set(DTYPES)
    assert messages.dtype_name(pb.DTYPE_UNSPECIFIED, "float32") == "float32"
    assert messages.dtype_name(pb.DTYPE_INT64, None) == "int64"


def test_command_kinds_match_the_engine() -> None:
    oneof = pb.Command.DESCRIPTOR.oneofs_by_name["kind"]
    assert {f.name for f in oneof.fields} == set(messages.DECODERS) == set(KINDS)


def test_every_rpc_is_implemented() -> None:
    for method in pb.DESCRIPTOR.services_by_name["Gradient"].methods:
        assert getattr(GradientServicer, method.name) is not getattr(
            pb_grpc.GradientServicer, method.name
        ), method.name


def test_values() -> None:
    assert messages.value(val("x")) == "x"
    assert messages.value(val(ref("x", grad=True))) == {"grad_of": "x"}
    assert messages.value(val(2)) == 2 and isinstance(messages.value(val(2)), int)
    assert messages.value(val(2.0)) == 2.0 and isinstance(messages.value(val(2.0)), float)
    assert messages.value(val(True)) is True
    assert messages.value(val(["a", "b", 3])) == ["a", "b", 3]
    with pytest.raises(InvalidArgument, match="a Value must set one of"):
        messages.value(pb.Value())


def test_attribute_only_kinds_are_refused_as_inputs() -> None:
    for kind in (pb.Value(text="x"), pb.Value(none=0), pb.Value(map=pb.ValueMap())):
        with pytest.raises(InvalidArgument, match="is for attributes only"):
            messages.value(kind)
    with pytest.raises(InvalidArgument, match="is for attributes only"):
        messages.value(val([1, pb.Value(text="...")]))


def test_attrs_keep_ints_and_floats_apart() -> None:
    """Each kind reads back as the HTTP API's JSON value: a whole float stays a float."""
    key = wire.attr_value([{"slice": [None, 4, 2]}, "...", None, 1, [0, 1]])
    key.list.items.add(map=pb.ValueMap(items={"tensor": val(ref("i", grad=True))}))
    attrs = messages.attrs(
        {
            "dim": val(1),
            "min": val(1.0),
            "dims": val([0, -1]),
            "keepdim": val(True),
            "dtype": pb.Value(text="float64"),
            "key": key,
            "nan": val(math.nan),
            "inf": val(-math.inf),
        }
    )
    assert math.isnan(attrs.pop("nan"))
    assert attrs == {
        "dim": 1,
        "min": 1.0,
        "dims": [0, -1],
        "keepdim": True,
        "dtype": "float64",
        "key": [{"slice": [None, 4, 2]}, "...", None, 1, [0, 1], {"tensor": {"grad_of": "i"}}],
        "inf": -math.inf,
    }
    assert [type(attrs[k]) for k in ("dim", "min", "keepdim")] == [int, float, bool]
    with pytest.raises(InvalidArgument, match="an attribute's Value must set one of"):
        messages.attrs({"dim": pb.Value()})


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_attr_values_round_trip_exactly(item: Any) -> None:
    """attr_value and attribute are inverses, on the wire too, with every type kept."""
    sent = pb.Value.FromString(wire.attr_value(item).SerializeToString())
    back = messages.attribute(sent)
    assert back == item and _types(back) == _types(item)


def _types(item: Any) -> Any:
    if isinstance(item, list):
        return [_types(v) for v in item]
    if isinstance(item, dict):
        return {k: _types(v) for k, v in item.items()}
    return type(item)


def test_tensor_data() -> None:
    array = messages.tensor_data(data([[1, 2], [3, 4]], "int16"))
    assert array.dtype == numpy.int16 and array.tolist() == [[1, 2], [3, 4]]
    message = wire.tensor_message(array)
    assert (list(message.shape), message.dtype) == ([2, 2], pb.DTYPE_INT16)
    assert message.data == numpy.array([1, 2, 3, 4], "<i2").tobytes()
    with pytest.raises(InvalidArgument, match=r"needs 8$"):
        messages.tensor_data(pb.TensorData(shape=[2], dtype=pb.DTYPE_FLOAT32, data=b"1234"))


# Each kind, with every field set: the dict must be one that engine.parsing.parse takes.
FULL_COMMANDS = [
    pb.Command(
        create=pb.CreateTensor(
            name="t", data=data([1.0]), dtype=pb.DTYPE_FLOAT64, requires_grad=True
        )
    ),
    pb.Command(create=pb.CreateTensor(name="z", factory="zeros", args=[val([2, 3])])),
    pb.Command(
        op=pb.ApplyOp(op="sum", inputs=[val("t")], attrs={"dim": val(0)}, name="s", no_grad=True)
    ),
    pb.Command(op=pb.ApplyOp(op="split", inputs=[val("t"), val(1)], names=["a", "b"])),
    pb.Command(
        backward=pb.Backward(
            tensor=ref("s"),
            gradient=ref("g"),
            retain_graph=False,
            create_graph=True,
            inputs=[ref("t")],
        )
    ),
    pb.Command(
        grad=pb.Grad(
            outputs=[ref("s")],
            inputs=[ref("t")],
            grad_outputs=[ref("g", grad=True)],
            retain_graph=True,
            create_graph=True,
            allow_unused=True,
            names=["dt"],
        )
    ),
    pb.Command(detach=pb.Detach(tensor=ref("t"), name="d")),
    pb.Command(zero_grad=pb.ZeroGrad(tensors=[ref("t")], set_to_none=True)),
    pb.Command(requires_grad=pb.RequiresGrad(tensor=ref("t"), requires_grad=True)),
    pb.Command(retain_grad=pb.RetainGrad(tensor=ref("s"))),
    pb.Command(get=pb.GetTensor(tensor=ref("t", grad=True), value=True, grad=True, repr=True)),
    pb.Command(release=pb.Release(names=["t", "s"])),
]


@pytest.mark.parametrize("message", FULL_COMMANDS, ids=lambda m: m.WhichOneof("kind"))
def test_commands_decode_to_what_the_engine_parses(message: pb.Command) -> None:
    (body,) = messages.batch([message])
    command = parse(body)
    assert command.kind == message.WhichOneof("kind")


def test_decoded_fields() -> None:
    create, _, op, _, backward, grad, *_ = messages.batch(FULL_COMMANDS)
    assert create["dtype"] == "float64" and create["requires_grad"] is True
    assert op["attrs"] == {"dim": 0} and op["name"] == "s" and op["no_grad"] is True
    assert backward["retain_graph"] is False and backward["gradient"] == "g"
    assert grad["grad_outputs"] == [{"grad_of": "g"}] and grad["names"] == ["dt"]


def test_proto_defaults_mean_not_given() -> None:
    create, op, backward = messages.batch(
        [
            pb.Command(create=pb.CreateTensor(factory="zeros", args=[val(1)])),
            pb.Command(op=pb.ApplyOp(op="neg", inputs=[val("t")])),
            pb.Command(backward=pb.Backward(tensor=ref("s"))),
        ]
    )
    assert "data" not in create and create["dtype"] is None and create["name"] is None
    assert (op["name"], op["names"], op["attrs"]) == (None, None, {})
    assert (backward["gradient"], backward["retain_graph"], backward["inputs"]) == (
        None,
        None,
        None,
    )
    factory = messages.command("create", pb.CreateTensor(data=data([1.0])))
    assert factory["factory"] == "tensor"


def test_a_batch_reports_the_index_of_a_command_it_cannot_decode() -> None:
    bad = pb.Command(op=pb.ApplyOp(op="add", inputs=[val("t"), pb.Value()]))
    with pytest.raises(InvalidArgument) as caught:
        messages.batch([FULL_COMMANDS[0], bad])
    assert caught.value.command_index == 1


def test_results() -> None:
    info = TensorInfo(
        name="x.grad",
        shape=(2,),
        dtype="float32",
        requires_grad=False,
        is_leaf=True,
        grad_fn=None,
        has_grad=False,
        value=numpy.array([math.nan, 1.0], "float32"),
        repr="tensor([nan, 1.])",
    )
    result = messages.result(Result("grad", [info, None]))
    first, absent = result.tensors
    assert (first.name, first.grad_fn, first.repr, first.absent) == ("x.grad", "", info.repr, False)
    assert first.HasField("value") and not first.HasField("grad")
    assert absent.absent and absent.name == ""


def test_errors() -> None:
    exc = NotFound("no tensor named 'q' in this session")
    exc.command_index = 4
    assert messages.error(exc) == pb.Error(
        code="not_found",
        status=5,
        detail="no tensor named 'q' in this session",
        command_index=4,
        torch_type="RuntimeError",
    )
    assert messages.error(KeyError("internals")) == pb.Error(
        code="internal", status=13, detail=GENERIC_DETAIL, command_index=-1
    )
