"""Every cell of the seed notebook, run against the engine, shows the notebook's output."""

import pytest

import engine
from tests import seed


def test_notebook_has_cells() -> None:
    assert len(seed.cells()) == 19


@pytest.mark.parametrize("index", range(19))
def test_cell_output_matches_notebook(index: int) -> None:
    results = seed.replay(engine)
    cell, shown = results[index]
    assert shown == cell.output, cell.label
