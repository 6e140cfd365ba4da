"""README's gRPC walkthrough: examples/grpc_seed.py, on generated stubs, prints the notebook."""

import subprocess
import sys
from pathlib import Path

from tests import seed
from tests.live_server import LiveServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "grpc_seed.py"


def test_grpc_example_prints_what_the_notebook_shows() -> None:
    with LiveServer.start() as server:
        out = subprocess.run(
            [sys.executable, str(EXAMPLE), server.grpc_target],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    expected = "\n".join(cell.output for cell in seed.cells() if cell.output)
    assert out.stdout.rstrip("\n") == expected
