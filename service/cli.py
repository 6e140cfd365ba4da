"""``gradserve serve`` (also ``python -m service``): start the HTTP and gRPC servers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from engine.backend import tune_host_allocator
from service.config import Settings
from service.observability import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradserve", description="Autograd as a service.")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the HTTP and gRPC servers")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; GRADSERVE_HOST)")
    serve.add_argument("--http-port", type=int, help="HTTP port, 0 for a free one (default 8000)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port, 0 for a free one (default 50051)")
    serve.add_argument("--device", help="default device of new sessions (cpu, cuda)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def serve_flags() -> dict[str, str]:
    """The ``serve`` flags by the Settings field they set: ``{"http_port": "--http-port"}``."""
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    return {a.dest: a.option_strings[0] for a in serve._actions if a.dest in Settings.model_fields}


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags override ``GRADSERVE_*`` variables, which override defaults."""
    overrides: dict[str, Any] = {
        key: value for key, value in vars(args).items() if key != "command" and value is not None
    }
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv if argv is not None else sys.argv[1:] or ["serve"])
    settings = settings_from(args)
    configure_logging(settings.log_level)
    tune_host_allocator()
    from service.server import serve

    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
