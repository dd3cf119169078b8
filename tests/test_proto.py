"""The contract: buf lint passes and the checked-in generated code matches the .proto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

GENERATED = ["reward_pb2.py", "reward_pb2.pyi", "reward_pb2_grpc.py"]


def buf_executable() -> str:
    found = shutil.which("buf") or str(REPO / ".venv/buf/node_modules/.bin/buf")
    assert Path(found).exists(), "buf not found: run `make setup-dev` (installs @bufbuild/buf from npm)"
    return found


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            "proto/reward/v1/reward.proto",
        ],
        cwd=REPO,
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "reward/v1" / name).read_text()
        checked_in = (REPO / "reward/v1" / name).read_text()
        assert fresh == checked_in, f"reward/v1/{name} is stale: run `make proto` and commit the result"


def test_buf_lint_passes() -> None:
    result = subprocess.run([buf_executable(), "lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_path_mirrors_proto_package() -> None:
    from reward.v1 import reward_pb2

    assert reward_pb2.DESCRIPTOR.package == "reward.v1"
    assert reward_pb2.DESCRIPTOR.name == "reward/v1/reward.proto"
    service = reward_pb2.DESCRIPTOR.services_by_name["RewardService"]
    assert [m.name for m in service.methods] == ["Score", "ListRewards"]
