"""Another team's client, generated from protos/sluice/v1 in another language (JavaScript,
by buf + protoc-gen-es, speaking gRPC through connect-node), against the real platform:
submit, watch, drop the stream and resume with after_seq, cancel, two error paths, an
interactive job through AttachJob and a job with test cases."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for_languages
from tests.support.broker import RunVhost
from tests.support.certs import Pki, make_pki
from tests.support.platform import Platform

CLIENT = Path(__file__).parent / "node_client"


@pytest.fixture(scope="module")
def node_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the interop client: "
                    "deploy/local/bootstrap.sh installs them")
    lock = CLIENT / "package-lock.json"
    installed = CLIENT / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=CLIENT, check=True, timeout=600)
    # Generated every run from the repo's protos: a proto change that breaks other
    # languages fails here.
    shutil.rmtree(CLIENT / "gen", ignore_errors=True)
    subprocess.run([str(CLIENT / "node_modules" / ".bin" / "buf"), "generate"], cwd=CLIENT,
                   check=True, timeout=120)
    return CLIENT


def node(node_client: Path, platform: Platform, key: str, *ca_file: str
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", "client.mjs", platform.api_target, key, *ca_file],
                          cwd=node_client, capture_output=True, text=True, timeout=180)


def run_client(node_client: Path, platform: Platform, key: str, *ca_file: str
               ) -> dict[str, Any]:
    done = node(node_client, platform, key, *ca_file)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_node_client_submits_watches_resumes_and_cancels(node_client: Path, platform: Platform,
                                                          tenant_key: str) -> None:
    check_session(run_client(node_client, platform, tenant_key))


@pytest.fixture(scope="module")
def tls_platform(vhost: RunVhost, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[Platform, Pki]]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    stack = Platform(tmp_path_factory.mktemp("tls"), vhost.amqp_url(),
                     prefix=f"interop-tls-{uuid.uuid4().hex[:6]}",
                     extra_env={"SLUICE_WORKER_SLOTS": "2", **pki.server_env()})
    stack.start_control_plane()
    stack.start_worker()
    try:
        yield stack, pki
    finally:
        stack.stop()


def test_node_client_speaks_tls_and_a_plaintext_one_is_refused(
        node_client: Path, tls_platform: tuple[Platform, Pki]) -> None:
    stack, pki = tls_platform
    key = stack.create_tenant(f"interop-tls-{uuid.uuid4().hex[:6]}")
    wait_for_languages(stack, key)
    check_session(run_client(node_client, stack, key, str(pki.ca.cert)))

    plaintext = node(node_client, stack, key)
    assert plaintext.returncode != 0
    assert "ConnectError" in plaintext.stderr, plaintext.stderr


def check_session(seen: dict[str, Any]) -> None:

    assert {"python", "bash"} <= set(seen["languages"])

    streamed = seen["streamed"]
    first, resumed = streamed["firstPart"], streamed["resumed"]
    seqs = [e["seq"] for e in first + resumed]
    # Resuming after the last seq seen continues the same sequence: nothing lost, no repeats.
    assert seqs == list(range(1, len(seqs) + 1))
    assert resumed and resumed[-1].get("state") == "SUCCEEDED"
    assert sum(1 for e in first if "output" in e) == 2
    output = "".join(e.get("output", "") for e in first + resumed)
    expected = "".join(f"line {i}\n" for i in range(6))
    assert output == expected
    assert streamed["state"] == "SUCCEEDED" and streamed["stdout"] == expected

    cancelled = seen["cancelled"]
    assert cancelled["state"] == "CANCELLED"
    assert cancelled["events"][-1].get("state") == "CANCELLED"
    assert any(e.get("output") == "sleeping\n" for e in cancelled["events"])
    assert cancelled["cancelledAfterMs"] < 10_000  # not the program's 60 s sleep

    errors = seen["errors"]
    assert errors["unknownLanguage"]["code"] == "InvalidArgument"
    assert "language" in errors["unknownLanguage"]["message"]
    assert errors["badKey"]["code"] == "Unauthenticated"

    interactive = seen["interactive"]
    assert interactive["answers"] == ["HELLO", "WORLD", "eof"]
    assert interactive["state"] == "SUCCEEDED"
    assert interactive["stdout"] == "HELLO\nWORLD\neof\n"

    cases = seen["cases"]
    assert [(e["testCase"], e["verdict"]) for e in cases["events"]] == [
        ("two", "OK"), ("three", "WRONG_ANSWER"), ("ten", "OK")]
    assert cases["verdict"] == "WRONG_ANSWER"
    assert cases["results"] == [["two", "OK", "4\n"], ["three", "WRONG_ANSWER", "6\n"],
                                ["ten", "OK", "20\n"]]
