"""The seed notebook through the client: printed as the notebook shows it, one round trip a cell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gradserve
import pytest

from tests import seed
from tests.client.conftest import TRANSPORTS, url_of
from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "seed_notebook.py"


def transcript() -> str:
    """What examples/seed_notebook.py prints: each cell's label, code, and shown output."""
    parts = []
    for cell in seed.cells():
        parts.append(f"{cell.label}:\n{cell.code}\n\n")
        if cell.output:
            parts.append(f"{cell.output}\n\n")
    return "".join(parts)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_example_prints_the_notebook(server: LiveServer, transport: str) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), url_of(server, transport)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # the script finds the checkout by itself
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == transcript()


def replay(session: gradserve.Session) -> list[tuple[str, str, int]]:
    """Each cell's label, shown output and round trips, the cells run unchanged."""
    namespace = {"torch": session}
    rows = []
    for cell in seed.cells():
        code = "\n".join(line for line in cell.code.splitlines() if line != "import torch")
        before = session.round_trips
        shown = seed.run_cell(code, namespace)
        rows.append((cell.label, shown, session.round_trips - before))
    return rows


def test_every_cell_needs_at_most_one_round_trip(client: gradserve.Client) -> None:
    with client.session() as torch:
        rows = replay(torch)
    expected = {cell.label: cell.output for cell in seed.cells()}
    assert [(label, shown) for label, shown, _ in rows] == list(expected.items())
    trips = {label: n for label, _, n in rows}
    assert all(n <= 1 for n in trips.values()), trips
    # Cells that only define or bind (no value shown) cost nothing.
    assert trips["In [1]"] == trips["In [3]"] == trips["In [68]"] == 0


@pytest.mark.parametrize(
    "options", [{"eager": True}, {"local_values": False}, {"max_batch": 3}], ids=str
)
def test_eager_and_other_modes_show_the_same(client: gradserve.Client, options: dict) -> None:
    with client.session(**options) as torch:
        rows = replay(torch)
    assert [shown for _, shown, _ in rows] == [cell.output for cell in seed.cells()]
    if options == {"eager": True}:  # one round trip per command: f(a) alone takes many
        assert dict((label, n) for label, _, n in rows)["In [79]"] > 10


def test_control_flow_without_local_values_asks_per_comparison(client: gradserve.Client) -> None:
    with client.session(local_values=False) as torch:
        trips = {label: n for label, _, n in replay(torch)}
    # while b.norm() < 1000 four times, if b.sum() > 0 once, then the shown values.
    assert trips["In [79]"] == 6
