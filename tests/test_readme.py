"""README.md stays true: its two commands, its configuration table, its examples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from scripts.config_table import table
from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_run_and_test_commands() -> None:
    first = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first.strip().splitlines()]
    assert commands == ["bash scripts/run.sh", "bash scripts/test.sh"]
    assert README.index("```sh") < README.index("\n## ")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci.splitlines()


def test_configuration_table_is_generated_from_the_settings() -> None:
    section = README.split("<!-- config-table:start -->\n", 1)[1].split("\n<!-- config-table:end")[
        0
    ]
    assert section == table(), "regenerate it: python scripts/config_table.py"


def test_every_path_the_readme_names_exists() -> None:
    paths = set(
        re.findall(
            r"`((?:examples|scripts|bench|service|engine|client|protos|deploy|tests)/[\w./-]+)`",
            README,
        )
    )
    paths |= set(re.findall(r"(?:python|bash) ((?:examples|scripts|bench)/[\w./-]+)", README))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p.rstrip(".")).exists())
    assert not missing


def test_run_command_starts_the_service_and_stops_on_sigterm() -> None:
    server = LiveServer.start(command=["bash", str(ROOT / "scripts" / "run.sh")], timeout=240)
    try:
        with urllib.request.urlopen(server.http_url + "/healthz", timeout=10) as response:
            assert json.load(response) == {"status": "ok"}
    finally:
        assert server.stop() == 0


@pytest.fixture(scope="module")
def server() -> object:
    with LiveServer.start() as live:
        yield live


def test_python_walkthrough_runs(server: LiveServer) -> None:
    code = _blocks("python")[0].replace("http://127.0.0.1:8000", server.http_url)
    code = re.sub(r"^x\.grad\b", "print(x.grad)", code, flags=re.M)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tensor([ 0.,  4.,  8., 12.])"


def test_curl_walkthrough_batch_gives_the_notebook_gradient(server: LiveServer) -> None:
    block = next(b for b in _blocks("sh") if "curl" in b)
    body = block.split("-d '", 2)[2].rsplit("'", 1)[0]
    request = urllib.request.Request(
        server.http_url + "/v1/sessions", data=b'{"seed": 0}', method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        session = json.load(response)
    batch = urllib.request.Request(
        f"{server.http_url}/v1/sessions/{session['id']}/batch", data=body.encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {session['token']}"},
    )  # fmt: skip
    with urllib.request.urlopen(batch, timeout=10) as response:
        results = json.load(response)["results"]
    assert results[-1]["tensors"][0]["repr"] == "tensor([ 0.,  4.,  8., 12.])"
