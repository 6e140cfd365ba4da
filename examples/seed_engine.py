"""Replay the seed notebook against the in-process engine and print each cell's output."""

import engine
from tests import seed


def main() -> None:
    for cell, shown in seed.replay(engine):
        print(f"{cell.label}:\n{cell.code}\n")
        if shown:
            print(f"{shown}\n")


if __name__ == "__main__":
    main()
