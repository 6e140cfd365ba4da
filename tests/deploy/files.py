"""Readers for the deployment files: the Dockerfile, docker-compose.yml, lock files, .dockerignore.

Each reads just enough of its format to check the files against the service, no more: the
Dockerfile reader knows stages, ARG defaults in FROM lines and the instructions tests look at.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
LOCKS = {
    "cpu": ROOT / "requirements.lock",
    "gpu": ROOT / "requirements-gpu.lock",
    "build": ROOT / "requirements-build.lock",
}


# ---------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARGs before the first FROM, with their defaults
    stages: list[Stage]

    def chain(self, stage: str, variant: str) -> list[Stage]:
        """The stage and the stages it is built FROM, root first, with VARIANT set."""
        args = self.build_args(variant)
        by_name = {s.name: s for s in self.stages}
        chain = [by_name[stage]]
        while (base := substitute(chain[0].base, args)) in by_name:
            chain.insert(0, by_name[base])
        return chain

    def build_args(self, variant: str) -> dict[str, str]:
        return {**self.args, "VARIANT": variant}

    def instructions(self, stage: str, variant: str) -> list[tuple[str, str]]:
        return [i for s in self.chain(stage, variant) for i in s.instructions]

    def image(self, variant: str) -> Image:
        """What the last stage's image holds for a variant: env, ports, command, healthcheck."""
        root = self.chain(self.stages[-1].name, variant)[0]
        image = Image(base=substitute(root.base, self.build_args(variant)))
        for keyword, args in self.instructions(self.stages[-1].name, variant):
            if keyword == "ENV":
                image.env.update(env_pairs(args))
            elif keyword == "EXPOSE":
                image.expose = [int(port.split("/")[0]) for port in args.split()]
            elif keyword == "CMD":
                image.cmd = json.loads(args)
            elif keyword == "USER":
                image.user = args
            elif keyword == "HEALTHCHECK":
                options, _, command = args.partition(" CMD ")
                image.healthcheck = json.loads(command)
                image.healthcheck_options = dict(o[2:].split("=", 1) for o in options.split())
        return image


@dataclass
class Image:
    base: str
    env: dict[str, str] = field(default_factory=dict)
    expose: list[int] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = "root"
    healthcheck: list[str] = field(default_factory=list)
    healthcheck_options: dict[str, str] = field(default_factory=dict)


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], text)


def env_pairs(args: str) -> dict[str, str]:
    """``ENV A=1 B=2`` (the only form this project's Dockerfile uses)."""
    return dict(token.split("=", 1) for token in shlex.split(args))


def read_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in _logical_lines(path.read_text()):
        if keyword == "FROM":
            words = rest.split()
            base = next(w for w in words if not w.startswith("--"))
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, base))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
    return Dockerfile(args, stages)


def _logical_lines(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuations joined."""
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        lines.append((keyword.upper(), rest.strip()))
        pending = ""
    return lines


# ---------------------------------------------------------------- docker-compose.yml


def read_compose(path: Path = COMPOSE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def compose_environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment; None where a name is given without a value (from the shell)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: None if value is None else str(value) for key, value in env.items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    """The container side of each published port, short or long syntax."""
    ports: set[int] = set()
    for port in service.get("ports", []):
        target = port["target"] if isinstance(port, dict) else str(port).rsplit(":", 1)[-1]
        ports.add(int(str(target).split("/")[0]))
    return ports


def seconds(duration: str) -> float:
    """A Compose / Docker duration such as ``10s``, ``1m30s`` or ``500ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


# ---------------------------------------------------------------- lock files


@dataclass
class Pin:
    requirement: Requirement
    hashes: list[str]

    @property
    def version(self) -> str:
        return next(iter(self.requirement.specifier)).version


def read_lock(path: Path) -> list[Pin]:
    """One Pin per requirement line of a pip-style lock (``name==v ; marker --hash=...``)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *hashes = re.split(r"\s+--hash=", line)
        pins.append(Pin(Requirement(spec), hashes))
    return pins


# ---------------------------------------------------------------- .dockerignore


def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def in_context(relative: str, patterns: list[str]) -> bool:
    """Whether Docker sends a path in the build context: the last pattern matching it or one of
    its parent folders decides, ``!`` patterns re-including."""
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        globs = [glob, glob[3:]] if glob.startswith("**/") else [glob]
        if any(_match(p, g) for p in prefixes for g in globs):
            included = negated
    return included


def _match(path: str, glob: str) -> bool:
    # Docker's `*` stays within one path element, except through `**`.
    if "**" not in glob and path.count("/") != glob.count("/"):
        return False
    return fnmatch.fnmatchcase(path, glob)
