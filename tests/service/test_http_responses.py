"""Results are encoded by pydantic's serializer: byte for byte what Starlette's json.dumps gives."""

from __future__ import annotations

import pytest
from fastapi.responses import JSONResponse

from service.config import Settings
from service.dataplane import DataPlane, render
from service.http import deps

BATCH = [
    {"kind": "create", "name": "x", "data": [[1.5, -0.0], [1e-30, 1e38]], "requires_grad": True},
    {"kind": "create", "name": "n", "data": {"shape": [3], "dtype": "float64",
                                             "data": ["NaN", "Infinity", "-Infinity"]}},
    {"kind": "create", "name": "i", "data": [[1, 2**62], [-3, 0]]},
    {"kind": "create", "name": "b", "data": [True, False]},
    {"kind": "op", "op": "mul", "inputs": ["x", 2.0], "name": "y"},
    {"kind": "op", "op": "sum", "inputs": ["y"]},
    {"kind": "backward", "tensor": "%1"},
    *(
        {"kind": "get", "tensor": name, "value": True, "grad": True, "repr": True}
        for name in ("x", "n", "i", "b", "y", "%1")
    ),
]  # fmt: skip


@pytest.mark.parametrize("binary", [False, True])
def test_results_encode_as_starlette_encodes_them(binary: bool) -> None:
    plane = DataPlane(Settings())
    try:
        info = plane.create_session(seed=0)
        assert info.token is not None
        session = plane.session(info.id, info.token)
        results = plane.execute(session, BATCH)
        content = {"results": [render(r, binary) for r in results]}
        assert deps.RESULTS_JSON.dump_json(content) == JSONResponse(content).body
    finally:
        plane.shutdown()


@pytest.mark.parametrize("binary", [False, True])
def test_responses_are_written_from_each_results_remembered_json(binary: bool) -> None:
    plane = DataPlane(Settings())
    try:
        info = plane.create_session(seed=0)
        assert info.token is not None
        session = plane.session(info.id, info.token)
        results = plane.execute(session, BATCH + BATCH[4:6])  # some records twice
        deps._RENDERED[binary].clear()
        rendered = [render(r, binary) for r in results]
        for _ in range(2):  # rendered, then remembered
            batch = deps._respond(results, binary, batch=True, status=200)
            assert batch.body == JSONResponse({"results": rendered}).body
            assert batch.headers == JSONResponse({"results": rendered}).headers
            for result, content in zip(results, rendered, strict=True):
                one = deps._respond([result], binary, batch=False, status=201)
                assert one.status_code == 201
                assert one.body == JSONResponse(content).body
        assert 0 < len(deps._RENDERED[binary]) < len(results)  # no arrays, each record once
    finally:
        plane.shutdown()
