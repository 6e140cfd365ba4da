"""The one settings object: defaults, overridden by ``GRADSERVE_*`` variables, then by flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.session import Limits


class Settings(BaseSettings):
    """Every knob of the service. Each field is also the ``GRADSERVE_<NAME>`` variable."""

    model_config = SettingsConfigDict(env_prefix="GRADSERVE_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address both servers bind to.")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    device: str = Field("cpu", description="Default device of new sessions: cpu or cuda[:N].")
    session_ttl: float = Field(1800.0, gt=0, description="Idle seconds before a session expires.")
    max_sessions: int = Field(1000, ge=1, description="Open sessions at most.")
    max_bytes_per_session: int = Field(
        1 << 30, ge=1, description="Bytes of tensors, grads and saved buffers per session."
    )
    max_tensors_per_session: int = Field(100_000, ge=1, description="Named tensors per session.")
    max_elements_per_tensor: int = Field(1 << 27, ge=1, description="Elements per tensor.")
    max_commands_per_batch: int = Field(10_000, ge=1, description="Commands per batch.")
    max_request_bytes: int = Field(
        256 << 20, ge=1024, description="Largest HTTP body or gRPC message, in bytes."
    )
    api_key: str | None = Field(
        None, description="When set, creating a session needs this key (X-API-Key / metadata)."
    )
    workers: int = Field(8, ge=1, description="Threads that run engine work off the event loop.")
    inline_max_elements: int = Field(
        4096,
        ge=0,
        description="A single elementwise op on at most this many elements runs on the event "
        "loop, sparing the hop to an engine thread (0: every command takes the hop).",
    )
    inline_max_seconds: float = Field(
        0.0005,
        ge=0,
        description="Such an op runs on the event loop only if its session's last one took at "
        "most this many seconds (the session's byte count walks its graph).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    def limits(self) -> Limits:
        return Limits(
            max_sessions=self.max_sessions,
            max_bytes_per_session=self.max_bytes_per_session,
            max_tensors_per_session=self.max_tensors_per_session,
            max_elements_per_tensor=self.max_elements_per_tensor,
            max_commands_per_batch=self.max_commands_per_batch,
        )
