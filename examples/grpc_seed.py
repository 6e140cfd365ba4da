"""The seed notebook over gRPC with stubs generated from protos/gradient/v1/gradient.proto.

Usage: ``python examples/grpc_seed.py HOST:PORT``. Prints what each cell of the notebook shows.
Any language's generated stubs work the same way: one ``Execute`` call per cell, each a batch
of commands; the session's token travels as ``authorization: Bearer`` metadata.
"""

from __future__ import annotations

import struct
import sys

import grpc

from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc


def ref(name: str, grad: bool = False) -> pb.Value:
    return pb.Value(tensor=pb.TensorRef(name=name, grad=grad))


def op(name: str, op_name: str, *inputs: pb.Value | float | int) -> pb.Command:
    values = [
        v if isinstance(v, pb.Value) else pb.Value(integer=v) if isinstance(v, int)
        else pb.Value(number=v)
        for v in inputs
    ]  # fmt: skip
    return pb.Command(op=pb.ApplyOp(op=op_name, inputs=values, name=name))


def show(name: str, grad: bool = False) -> pb.Command:
    return pb.Command(get=pb.GetTensor(tensor=pb.TensorRef(name=name, grad=grad), repr=True))


def backward(name: str, gradient: str | None = None) -> pb.Command:
    g = pb.TensorRef(name=gradient) if gradient else None
    return pb.Command(backward=pb.Backward(tensor=pb.TensorRef(name=name), gradient=g))


def zero_grad(name: str) -> pb.Command:
    return pb.Command(zero_grad=pb.ZeroGrad(tensors=[pb.TensorRef(name=name)]))


class Notebook:
    """One session; ``run`` sends a cell's commands as one batch and returns the reprs read."""

    def __init__(self, target: str) -> None:
        self.stub = pb_grpc.GradientStub(grpc.insecure_channel(target))
        session = self.stub.CreateSession(pb.CreateSessionRequest(seed=0))
        self.id = session.id
        self.metadata = (("authorization", f"Bearer {session.token}"),)

    def run(self, *commands: pb.Command) -> list[str]:
        request = pb.ExecuteRequest(session_id=self.id, commands=commands)
        response = self.stub.Execute(request, metadata=self.metadata)
        return [t.repr for r in response.results if r.kind == "get" for t in r.tensors]

    def value(self, name: str) -> float | bool:
        """The value of a one-element float32 or bool tensor."""
        request = pb.ExecuteRequest(
            session_id=self.id,
            commands=[pb.Command(get=pb.GetTensor(tensor=pb.TensorRef(name=name), value=True))],
        )
        (result,) = self.stub.Execute(request, metadata=self.metadata).results
        data = result.tensors[0].value
        if data.dtype == pb.DTYPE_BOOL:
            return bool(data.data[0])
        return float(struct.unpack("<f", data.data)[0])


def pair(*reprs: str) -> str:
    """IPython's display of a tuple: one line if it fits in 79 columns, else one per line."""
    flat = "(" + ", ".join(reprs) + ")"
    return (
        flat if len(flat) <= 79 else "(" + ",\n ".join(r.replace("\n", "\n ") for r in reprs) + ")"
    )


def main(target: str) -> None:
    nb = Notebook(target)
    arange = pb.Command(
        create=pb.CreateTensor(name="x", factory="arange", args=[pb.Value(number=4.0)])
    )
    print(*nb.run(arange, show("x")))
    nb.run(
        pb.Command(requires_grad=pb.RequiresGrad(tensor=pb.TensorRef(name="x"), requires_grad=True))
    )
    print(*nb.run(op("d", "dot", ref("x"), ref("x")), show("d")))
    print(*nb.run(op("d", "dot", ref("x"), ref("x")), op("y", "mul", 2, ref("d")), show("y")))
    print(*nb.run(backward("y"), show("x", grad=True)))
    print(pair(*nb.run(op("t", "mul", 4, ref("x")), show("x", grad=True), show("t"))))
    print(*nb.run(op("e", "eq", ref("x", grad=True), ref("t")), show("e")))
    print(*nb.run(op("s", "sum", ref("x")), show("s")))
    print(*nb.run(zero_grad("x"), op("y", "sum", ref("x")), backward("y"), show("x", grad=True)))
    print(pair(*nb.run(op("xx", "mul", ref("x"), ref("x")), show("x"), show("xx"))))
    ones = pb.Command(create=pb.CreateTensor(name="o", factory="ones", args=[pb.Value(integer=4)]))
    print(*nb.run(zero_grad("x"), op("y", "mul", ref("x"), ref("x")), ones, backward("y", "o"),
                  show("x", grad=True)))  # fmt: skip
    print(pair(*nb.run(op("s", "sum", ref("y")), show("s"), show("o"))))
    detach = pb.Command(detach=pb.Detach(tensor=pb.TensorRef(name="y"), name="u"))
    print(*nb.run(zero_grad("x"), op("y", "mul", ref("x"), ref("x")), detach,
                  op("z", "mul", ref("u"), ref("x")), op("s", "sum", ref("z")), backward("s"),
                  op("e", "eq", ref("x", grad=True), ref("u")), show("e")))  # fmt: skip
    print(pair(*nb.run(show("y"), show("z"), show("u"), show("x", grad=True))))
    print(*nb.run(zero_grad("x"), op("s", "sum", ref("y")), backward("s"),
                  op("t", "mul", 2, ref("x")), op("e", "eq", ref("x", grad=True), ref("t")),
                  show("e")))  # fmt: skip
    # The control-flow cell: the loop and the branch run here, on values read from the server.
    hundred = pb.TensorData(dtype=pb.DTYPE_FLOAT32, data=struct.pack("<f", 100.0))
    a = pb.Command(create=pb.CreateTensor(name="a", data=hundred, requires_grad=True))
    nb.run(a, op("b", "mul", ref("a"), 2), op("n", "norm", ref("b")), op("c", "lt", ref("n"), 1000))
    while nb.value("c"):
        nb.run(
            op("b", "mul", ref("b"), 2), op("n", "norm", ref("b")), op("c", "lt", ref("n"), 1000)
        )
    nb.run(op("s", "sum", ref("b")), op("c", "gt", ref("s"), 0))
    d = "b"  # c = b
    if not nb.value("c"):
        d = "d"
        nb.run(op(d, "mul", 100, ref("b")))
    print(pair(*nb.run(backward(d), show("a"), show(d))))
    check = op("e", "eq", ref("a", grad=True), ref("q"))
    print(pair(*nb.run(op("q", "div", ref(d), ref("a")), check, show("e"), show("a", grad=True))))


if __name__ == "__main__":
    main(sys.argv[1])
