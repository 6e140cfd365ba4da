"""``python -m bench <command> [options]``: one subcommand per benchmark module.

Each module named in ``COMMANDS`` provides ``add_arguments(parser)`` and ``main(args) -> int``.
Only the chosen command's module is imported, so one benchmark's imports (torch, grpc, a
module still being written) never stand in another's way. Adding a benchmark is one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "engine": ("bench.engine", "engine per-op overhead, throughput and memory against PyTorch"),
    "allocator": (
        "bench.allocator",
        "the server's host allocator setting against glibc's defaults",
    ),
    "sessions": ("bench.sessions", "command-API batch overhead over direct engine calls"),
    "service": ("bench.service", "HTTP and gRPC round trips, batches and uploads over bare peers"),
    "client": ("bench.client", "Python client: lazy vs eager, and vs torch.distributed.rpc"),
}


def _commands_parser() -> argparse.ArgumentParser:
    """The top-level parser: lists the commands, imports none of them."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def build_parser(command: str) -> argparse.ArgumentParser:
    """The parser of one command, with the options its module adds."""
    module_name, summary = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m bench {command}", description=summary)
    module.add_arguments(parser)
    parser.set_defaults(run=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        _commands_parser().parse_args(argv)  # prints the usage, or the error, and exits
        return 2
    args = build_parser(argv[0]).parse_args(argv[1:])
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
