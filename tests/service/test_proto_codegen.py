"""The committed generated code is what scripts/gen_proto.sh makes of protos/ now."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_proto.sh"
COMMITTED = ROOT / "service" / "gen"


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_current(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
    )
    fresh, committed = _files(out), _files(COMMITTED)
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"service/gen is stale ({stale}): run `bash scripts/gen_proto.sh`"


def test_generated_modules_import_as_part_of_the_service_package() -> None:
    code = (
        "from service.gen.gradient.v1 import gradient_pb2, gradient_pb2_grpc\n"
        "assert gradient_pb2_grpc.gradient_dot_v1_dot_gradient__pb2 is gradient_pb2\n"
        "assert gradient_pb2.DESCRIPTOR.name == 'gradient/v1/gradient.proto'\n"
        "import sys; assert 'gradient' not in sys.modules\n"
    )
    # A fresh interpreter from elsewhere: nothing may resolve through the working directory.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)
