"""Auth for external teams: bearer tokens per team, TLS and mTLS, per-team limits."""

from __future__ import annotations

import datetime
import json
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from conftest import REPO, run_module, start_server, stop_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_proto import buf_executable

from reward.v1 import reward_pb2 as pb
from reward.v1 import reward_pb2_grpc
from reward_server.auth import token_sha256
from trainer_client import RewardClient, RewardServiceError

TOKENS = {"research": "tok-research-8f2c1a", "partner": "tok-partner-77d9e0"}
REQUEST = pb.ScoreRequest(
    samples=[pb.Sample(completion="<answer>\n7\n</answer>", fields={"answer": "7"})],
    rewards=[pb.RewardSpec(name="xml_correctness")],
)


def write_auth(path: Path, **limits: dict) -> Path:
    lines = ["teams:"]
    for team, token in TOKENS.items():
        lines.append(f"  {team}:\n    token_sha256: {token_sha256(token)}")
        lines += [f"    {k}: {v}" for k, v in limits.get(team, {}).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    auth = write_auth(tmp / "auth.yaml", partner={"max_concurrent_requests": 1, "max_samples_per_second": 50})
    running = start_server(tmp, "--auth-file", str(auth), "--workers", "1", "--metrics-port", "0")
    yield running
    stop_server(running)


def bearer(team: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {TOKENS[team]}"),)


def test_every_rpc_needs_a_valid_token_but_health_stays_open(auth_server) -> None:
    stub = auth_server.stub()
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKENS["research"]),)):
        for rpc, request in ((stub.Score, REQUEST), (stub.ListRewards, pb.ListRewardsRequest())):
            with pytest.raises(grpc.RpcError) as caught:
                rpc(request, metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    def list_methods(*headers: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                buf_executable(),
                "curl",
                "--protocol",
                "grpc",
                "--http2-prior-knowledge",
                *headers,
                "--list-methods",
                f"http://{auth_server.address}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = list_methods()
    assert refused.returncode != 0 and "not authenticated" in refused.stderr  # buf's words for UNAUTHENTICATED
    allowed = list_methods("--reflect-header", f"authorization: Bearer {TOKENS['research']}")
    assert allowed.returncode == 0 and "reward.v1.RewardService/Score" in allowed.stdout
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(auth_server.address))
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert list(stub.Score(REQUEST, metadata=bearer("research"), timeout=10).results[0].scores) == [2.0]
    assert stub.ListRewards(pb.ListRewardsRequest(), metadata=bearer("partner"), timeout=10).rewards


def test_buf_curl_with_auth_as_the_readme_says(auth_server) -> None:
    """README "buf curl against a server with auth": -H alone fails on reflection with buf's misleading message;
    --reflect-header or --schema proto/ work; with --schema a wrong token shows the server's real answer."""
    sample = {"completion": "<answer>\n7\n</answer>", "fields": {"answer": "7"}}
    body = json.dumps({"samples": [sample], "rewards": [{"name": "xml_integer"}]})
    url = f"http://{auth_server.address}/reward.v1.RewardService/Score"
    token = f"authorization: Bearer {TOKENS['research']}"

    def curl(*args: str) -> subprocess.CompletedProcess:
        command = [buf_executable(), "curl", "--protocol", "grpc", "--http2-prior-knowledge", *args, "-d", body, url]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)

    header_only = curl("-H", token)
    assert header_only.returncode != 0
    assert 'failed to find service named "reward.v1.RewardService" in schema' in header_only.stderr
    for way in (("--reflect-header", token), ("--schema", "proto/")):
        done = curl("-H", token, *way)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["results"][0]["scores"] == [0.5]
    wrong = curl("--schema", "proto/", "-H", "authorization: Bearer nope")
    assert wrong.returncode != 0
    assert json.loads(wrong.stderr)["code"] == "unauthenticated"
    missing = curl("--schema", "proto/")
    assert json.loads(missing.stderr) == {
        "code": "unauthenticated",
        "message": "missing 'authorization: Bearer <token>' metadata",
    }


def test_trainer_client_sends_the_token(auth_server) -> None:
    with RewardClient(auth_server.address, token=TOKENS["research"]) as client:
        result = client.score([{"completion": "<answer>\n7\n</answer>", "fields": {"answer": "7"}}], ["xml_integer"])
        assert result["xml_integer"] == [0.5]
    with RewardClient(auth_server.address, token="nope") as client, pytest.raises(RewardServiceError) as caught:
        client.list_rewards()
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_per_team_sample_rate_is_resource_exhausted_with_a_retry_hint(auth_server) -> None:
    stub = auth_server.stub()
    big = pb.ScoreRequest(samples=list(REQUEST.samples) * 40, rewards=REQUEST.rewards)
    stub.Score(big, metadata=bearer("partner"), timeout=10)  # 40 of the 50 samples this second
    call = stub.Score.with_call
    with pytest.raises(grpc.RpcError) as caught:
        call(big, metadata=bearer("partner"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "team 'partner' is over its limit of 50 samples/s; retry after" in caught.value.details()
    pushback = dict(caught.value.trailing_metadata())["grpc-retry-pushback-ms"]
    assert int(pushback) > 0
    # Another team is not affected by partner's limit.
    assert stub.Score(big, metadata=bearer("research"), timeout=10).results


def test_team_names_in_logs_and_metrics_and_tokens_nowhere(auth_server) -> None:
    auth_server.stub().Score(REQUEST, metadata=bearer("research"), timeout=10)
    log = auth_server.log()
    assert "team=research" in log
    port = next(line.rsplit(":", 1)[1].split("/")[0] for line in log.splitlines() if "metrics on" in line)
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    score = 'method="/reward.v1.RewardService/Score"'
    assert f'reward_requests_total{{code="OK",{score},team="research",transport="grpc"}}' in page
    assert 'code="UNAUTHENTICATED"' in page
    for token in TOKENS.values():
        assert token not in log and token not in page


def test_non_loopback_without_auth_is_refused(tmp_path) -> None:
    result = run_module("reward_server", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without auth" in result.stderr


def _cert(subject: str, issuer=None, issuer_key=None, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert, key


def _write(tmp: Path, name: str, cert, key) -> tuple[Path, Path]:
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pki")
    ca, ca_key = _cert("test-ca", ca=True)
    server, server_key = _cert("localhost", ca, ca_key)
    client, client_key = _cert("trainer", ca, ca_key)
    files = {}
    files["ca"], _ = _write(tmp, "ca", ca, ca_key)
    files["server_cert"], files["server_key"] = _write(tmp, "server", server, server_key)
    files["client_cert"], files["client_key"] = _write(tmp, "client", client, client_key)
    return files


def _score_over_tls(port: str, pki, with_client_cert: bool) -> list[float]:
    client = RewardClient(
        f"localhost:{port}",
        tls=str(pki["ca"]),
        deadline_s=10,
        client_cert=pki["client_cert"] if with_client_cert else None,
        client_key=pki["client_key"] if with_client_cert else None,
    )
    with client:
        return client.score([{"completion": "<answer>\n7\n</answer>", "fields": {"answer": "7"}}], ["xml_correctness"])[
            "xml_correctness"
        ]


def test_tls_and_mtls(tmp_path, pki) -> None:
    tls_args = ["--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]), "--workers", "1"]
    tls = start_server(tmp_path, *tls_args)
    try:
        port = tls.address.rsplit(":", 1)[1]
        assert "(TLS, no auth)" in tls.log()
        assert _score_over_tls(port, pki, with_client_cert=False) == [2.0]
        with pytest.raises(grpc.RpcError):  # plaintext against a TLS port fails
            reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(tls.address)).Score(REQUEST, timeout=5)
    finally:
        stop_server(tls)
    mtls = start_server(tmp_path, *tls_args, "--tls-client-ca", str(pki["ca"]))
    try:
        port = mtls.address.rsplit(":", 1)[1]
        assert "(mTLS, no auth)" in mtls.log()
        assert _score_over_tls(port, pki, with_client_cert=True) == [2.0]
        with pytest.raises(RewardServiceError) as caught:
            _score_over_tls(port, pki, with_client_cert=False)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        stop_server(mtls)
