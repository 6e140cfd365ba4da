"""Replay the seed notebook on a gradserve server and print each cell's output.

    python examples/seed_notebook.py http://127.0.0.1:8000
    python examples/seed_notebook.py grpc://127.0.0.1:50051

The cells run unchanged (``tests/data/autograd_notebook.txt``, as ``examples/seed_engine.py``
replays them on the in-process engine); only the binding of ``torch`` differs:
``torch = gradserve.connect(url).session()``. Each cell prints as the notebook shows it: its
label, its code, then what IPython displays for its last expression, if anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gradserve

# The notebook and its IPython-style display live in tests/seed.py; run as a script, this
# file's directory (not the checkout) is on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http://host:port or grpc://host:port")
    args = parser.parse_args(argv)
    with gradserve.connect(args.url) as client, client.session() as torch:
        for cell, shown in seed.replay(torch):
            print(f"{cell.label}:\n{cell.code}\n")
            if shown:
                print(f"{shown}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
