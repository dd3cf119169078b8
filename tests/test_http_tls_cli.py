"""The HTTP transport started from the command line (``--http-port``), and over TLS: with ``--tls-cert`` the HTTP
port serves HTTPS with gRPC's certificate and key (bearer tokens never travel in clear where gRPC's do not), and with
``--tls-client-ca`` it requires a client certificate under the same CA, as gRPC does. Certificates are made in the
test (``test_security``'s helpers: a CA, a server certificate for ``localhost``, a client certificate)."""

from __future__ import annotations

import re
import ssl

import httpx
import pytest
from conftest import free_port, start_server, stop_server
from test_security import _cert, _write

from reward.v1 import reward_pb2 as pb

PROFILES = """
profiles:
  gsm8k:
    rewards: [{name: xml_correctness}, {name: xml_tag_count, weight: 0.5}]
"""
BODY = {"query": ["Q\n<answer>\n7\n</answer>\n<|im_end|>"], "prompts": ["Q\n"], "labels": ["7"]}
REWARDS = [pb.RewardSpec(name="xml_correctness"), pb.RewardSpec(name="xml_tag_count", weight=0.5)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("http-pki")
    ca, ca_key = _cert("test-ca", ca=True)
    files = {}
    files["ca"], _ = _write(tmp, "ca", ca, ca_key)
    files["server_cert"], files["server_key"] = _write(tmp, "server", *_cert("localhost", ca, ca_key))
    files["client_cert"], files["client_key"] = _write(tmp, "client", *_cert("trainer", ca, ca_key))
    return files


def _context(pki: dict, client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if client_cert:
        context.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    return context


def _grpc_total(server) -> float:
    sample = pb.Sample(completion="<answer>\n7\n</answer>\n", prompt_text="Q\n", fields={"answer": "7"})
    return server.stub().Score(pb.ScoreRequest(samples=[sample], rewards=REWARDS), timeout=30).total[0]


def test_the_http_port_flag_serves_http_on_the_port_it_names(tmp_path) -> None:
    """--http-port on the command line (the config file has profiles, no http_port)."""
    port = free_port()
    server = start_server(tmp_path, "--http-port", str(port), "--workers", "0", config=PROFILES)
    try:
        assert re.search(rf"HTTP/JSON on http://127\.0\.0\.1:{port} \(profiles: gsm8k\)", server.log()), server.log()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "SERVING"}
        answer = httpx.post(f"http://127.0.0.1:{port}/openrlhf/gsm8k", json=BODY).json()
        # The gRPC port is plaintext here; the same total over both transports.
        assert answer["rewards"] == [_grpc_total(server)]
    finally:
        stop_server(server)


def test_with_tls_the_http_port_serves_https_with_the_grpc_certificate(tmp_path, pki) -> None:
    tls = ["--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"])]
    server = start_server(tmp_path, *tls, "--http-port", "0", "--workers", "0", config=PROFILES)
    try:
        port = re.search(r"HTTP/JSON on https://127\.0\.0\.1:(\d+)", server.log()).group(1)
        assert "(TLS, no auth)" in server.log()
        with httpx.Client(verify=_context(pki, client_cert=False)) as client:
            assert client.get(f"https://localhost:{port}/healthz").json() == {"status": "SERVING"}
            answer = client.post(f"https://localhost:{port}/openrlhf/gsm8k", json=BODY)
            assert answer.status_code == 200 and answer.json()["extra_logs"]["xml_correctness"] == [2.0]
        with pytest.raises(httpx.TransportError):  # plaintext against the HTTPS port
            httpx.post(f"http://localhost:{port}/openrlhf/gsm8k", json=BODY, timeout=10)
        with pytest.raises(httpx.ConnectError):  # a certificate the client does not trust
            httpx.get(f"https://localhost:{port}/healthz", timeout=10)
    finally:
        stop_server(server)


def test_with_mtls_the_http_port_requires_a_client_certificate(tmp_path, pki) -> None:
    tls = ["--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"])]
    server = start_server(
        tmp_path, *tls, "--tls-client-ca", str(pki["ca"]), "--http-port", "0", "--workers", "0", config=PROFILES
    )
    try:
        port = re.search(r"HTTP/JSON on https://127\.0\.0\.1:(\d+)", server.log()).group(1)
        assert "(mTLS, no auth)" in server.log()
        with httpx.Client(verify=_context(pki, client_cert=True)) as client:
            answer = client.post(f"https://localhost:{port}/openrlhf/gsm8k", json=BODY)
            assert answer.status_code == 200 and answer.json()["extra_logs"]["xml_correctness"] == [2.0]
        with (
            pytest.raises((httpx.TransportError, ssl.SSLError)),
            httpx.Client(verify=_context(pki, client_cert=False)) as client,
        ):
            client.get(f"https://localhost:{port}/healthz", timeout=10)
    finally:
        stop_server(server)
