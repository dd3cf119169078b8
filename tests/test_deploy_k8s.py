"""deploy/k8s and deploy/accelerate, checked without a cluster.

Every manifest validates against the strict Kubernetes JSON schemas bundled in kubernetes-validate (from PyPI, no
download at run time), for the oldest and the newest API version we claim. Then the wiring a schema cannot see:
Services select their pods, probes hit the served port, referenced Secrets/ConfigMaps/claims exist, the training
Job's rendezvous name is pod 0's, and every command line parses with the real parser of the program it starts.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser
from conftest import REPO

from inference import serve_cli
from reward_server.auth import Authenticator, token_sha256
from reward_server.cli import build_parser as reward_server_parser
from reward_server.code.sandbox.seccomp import container_profile
from reward_server.config import load_config
from trainer_client.recipes import load_recipe
from trainer_client.train import build_parser as grpo_train_parser

K8S = REPO / "deploy" / "k8s"
ACCELERATE = REPO / "deploy" / "accelerate"
#: Oldest Kubernetes we claim (native gRPC probes are GA since 1.27) and the newest schema bundled.
VERSIONS = ("1.30", "1.37")
#: Where the trainer image puts deploy/accelerate and configs/ (see the Dockerfile's trainer stage).
IMAGE_PATHS = {"/opt/grpo-rewards/accelerate/": ACCELERATE, "/opt/grpo-rewards/configs/": REPO / "configs"}


def manifests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":  # kustomize's own file, not a Kubernetes object
            continue
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def objects(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def pod_specs() -> dict[str, dict]:
    """Workload name → its pod template (Deployments and Jobs)."""
    return {n: d["spec"]["template"] for kind in ("Deployment", "Job") for n, d in objects(kind).items()}


def container(workload: str) -> dict:
    (only,) = pod_specs()[workload]["spec"]["containers"]
    return only


def in_image(path: str) -> Path:
    for prefix, local in IMAGE_PATHS.items():
        if path.startswith(prefix):
            return local / path[len(prefix) :]
    raise AssertionError(f"{path} is not a path the trainer image provides")


KUBE_OBJECTS = [(f"{file}:{doc['kind']}/{doc['metadata']['name']}", doc) for file, doc in manifests()]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "doc"), KUBE_OBJECTS)
def test_manifest_validates_against_strict_kubernetes_schema(name: str, doc: dict, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_strict_schema_rejects_typos_and_wrong_types() -> None:
    """The validator is not a no-op: a misspelled probe field and a string port both fail."""
    deployment = objects("Deployment")["reward-server"]
    for mutate, needle in (
        (lambda c: c["readinessProbe"]["grpc"].update(servce="x"), "servce"),
        (lambda c: c["livenessProbe"]["grpc"].update(port="50051"), "'50051' is not of type 'integer'"),
    ):
        broken = copy.deepcopy(deployment)
        mutate(broken["spec"]["template"]["spec"]["containers"][0])
        with pytest.raises(kubernetes_validate.ValidationError, match=re.escape(needle)):
            kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_kustomization_lists_the_services_but_not_the_job_or_example_secrets() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert all((K8S / r).exists() for r in listed)
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk - listed == {"train-job.yaml", "secrets.example.yaml"}


def test_headless_services_select_their_pods_on_a_declared_port() -> None:
    pods = pod_specs()
    for name, service in objects("Service").items():
        selector = service["spec"]["selector"]
        matching = [w for w, t in pods.items() if selector.items() <= _pod_labels(w, t).items()]
        assert matching, f"Service {name} selects no pod"
        declared = {p.get("name") for w in matching for c in pods[w]["spec"]["containers"] for p in c["ports"]}
        declared |= {p["containerPort"] for w in matching for c in pods[w]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in declared, f"Service {name} targets undeclared port {port['targetPort']}"
    for name in ("reward-server", "reward-server-sentiment", "grpo-train"):
        assert objects("Service")[name]["spec"]["clusterIP"] == "None", f"{name} must be headless for round_robin"


def _pod_labels(workload: str, template: dict) -> dict:
    labels = dict(template["metadata"]["labels"])
    if workload in objects("Job"):
        labels["batch.kubernetes.io/job-name"] = workload  # set by the Job controller on every pod
    return labels


@pytest.mark.parametrize("workload", ["reward-server", "reward-server-sentiment"])
def test_reward_server_probes_use_grpc_health_on_the_served_port(workload: str, tmp_path: Path) -> None:
    spec = container(workload)
    args = reward_server_parser().parse_args(spec["args"])
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"grpc": args.port, "metrics": args.metrics_port}
    annotations = pod_specs()[workload]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == args.metrics_port and args.metrics_host == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert spec[probe]["grpc"]["port"] == args.port
    assert spec["readinessProbe"]["grpc"]["service"] == "reward.v1.RewardService"
    grace = pod_specs()[workload]["spec"]["terminationGracePeriodSeconds"]
    config = load_config(_config_map_file(spec, args.config, tmp_path), host=args.host, port=args.port)
    assert config.grace_s < grace, "the kubelet would kill in-flight calls before the server's grace period ends"
    # One scoring worker process per requested core: more would only contend for the same CPU quota.
    assert config.workers == int(spec["resources"]["requests"]["cpu"])


def _config_map_file(spec: dict, path: str, tmp_path: Path) -> Path:
    """Write the ConfigMap entry that is mounted at ``path`` to a temp file, so the real loader can read it."""
    mount = next(m for m in spec["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for w in pod_specs().values() for v in w["spec"]["volumes"] if v["name"] == mount["name"])
    data = objects("ConfigMap")[volume["configMap"]["name"]]["data"][path.rsplit("/", 1)[1]]
    target = tmp_path / "config.yaml"
    target.write_text(data)
    return target


def test_model_replicas_get_a_gpu_and_rule_replicas_none() -> None:
    sentiment, rules = container("reward-server-sentiment"), container("reward-server")
    assert sentiment["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in rules["resources"]["limits"]
    args = reward_server_parser().parse_args(sentiment["args"])
    assert args.enable_sentiment and args.device == "cuda" and args.sentiment_model
    assert not reward_server_parser().parse_args(rules["args"]).enable_sentiment
    hpa = objects("HorizontalPodAutoscaler")["reward-server"]
    assert hpa["spec"]["scaleTargetRef"]["name"] in objects("Deployment")


def test_referenced_secrets_configmaps_and_claims_exist() -> None:
    secrets = {n: s["stringData"] for n, s in objects("Secret").items()}
    for workload, template in pod_specs().items():
        for volume in template["spec"]["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, workload
            if "configMap" in volume:
                assert volume["configMap"]["name"] in objects("ConfigMap"), workload
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in objects("PersistentVolumeClaim"), workload
        for env in template["spec"]["containers"][0].get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], f"{workload}: {ref}"
    # The teams file a reward server mounts is read by --auth-file at the mounted path.
    for workload in ("reward-server", "reward-server-sentiment"):
        spec = container(workload)
        auth_file = spec["args"][spec["args"].index("--auth-file") + 1]
        mount = next(m for m in spec["volumeMounts"] if auth_file.startswith(m["mountPath"] + "/"))
        assert auth_file.rsplit("/", 1)[1] in secrets["reward-server-teams"], mount


def _claims(template: dict) -> dict[str, str]:
    volumes = template["spec"]["volumes"]
    return {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v}


def launch_args(workload: str) -> tuple[object, list[str]]:
    """accelerate launch's parsed arguments, with $(VAR) expanded from the container's env as the kubelet does."""
    spec = container(workload)
    env = {e["name"]: e.get("value", "0") for e in spec["env"]}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in spec["args"]]
    assert spec["command"] == ["accelerate", "launch"]
    parsed = launch_command_parser().parse_args(args)
    return parsed, parsed.training_script_args


def test_training_job_rendezvous_and_world_size_are_consistent() -> None:
    job = objects("Job")["grpo-train"]
    parsed, _ = launch_args("grpo-train")
    nodes = job["spec"]["completions"]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["parallelism"] == nodes
    assert parsed.num_machines == nodes
    gpus_per_node = int(container("grpo-train")["resources"]["limits"]["nvidia.com/gpu"])
    assert parsed.num_processes == nodes * gpus_per_node
    # Indexed Job pods are named <job>-<index>; with the subdomain, pod 0 is <job>-0.<service>.
    subdomain = job["spec"]["template"]["spec"]["subdomain"]
    assert subdomain in objects("Service")
    assert parsed.main_process_ip == f"grpo-train-0.{subdomain}"
    rank = next(e for e in container("grpo-train")["env"] if e["name"] == "MACHINE_RANK")
    assert "job-completion-index" in rank["valueFrom"]["fieldRef"]["fieldPath"]
    assert load_config_from_file(str(in_image(parsed.config_file))).distributed_type.value == "DEEPSPEED"


def test_training_job_runs_grpo_train_against_the_headless_reward_service() -> None:
    _, script_args = launch_args("grpo-train")
    args = grpo_train_parser().parse_args(script_args)
    # The recipe exists in the image and takes the job's overrides (the real recipe loader checks every key).
    recipe = load_recipe(in_image(args.config), args.overrides)
    assert recipe.reward_server.target == "dns:///reward-server:50051"
    # lora-serve serves the recipe's base model and watches the folder the job writes checkpoints to, on one claim.
    own, _vllm_args = serve_cli.split_argv(container("lora-serve")["args"])
    serve_args = serve_cli.build_parser().parse_args(own)
    assert serve_args.watch == recipe.training["output_dir"]
    assert serve_args.base_model == recipe.model.name_or_path
    claims = {w: _claims(t) for w, t in pod_specs().items()}
    assert claims["grpo-train"]["checkpoints"] == claims["lora-serve"]["checkpoints"]


@pytest.mark.parametrize("path", sorted(ACCELERATE.glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load_with_accelerate(path: Path) -> None:
    config = load_config_from_file(str(path))
    assert config.distributed_type.value == "DEEPSPEED"
    deepspeed = config.deepspeed_config
    # torchrun on every node: no ssh/pdsh between pods.
    assert deepspeed["deepspeed_multinode_launcher"] == "standard"
    assert deepspeed["zero_stage"] in (2, 3)
    # Left to the recipe's GRPOConfig ("auto"), so DeepSpeed and TRL never disagree.
    assert "gradient_accumulation_steps" not in deepspeed and "gradient_clipping" not in deepspeed


def test_example_teams_secret_has_the_shape_the_auth_file_loader_reads(tmp_path: Path) -> None:
    """Fill the placeholder with a real hash, as the instructions say, and load it with the server's own loader."""
    teams = objects("Secret")["reward-server-teams"]["stringData"]["teams.yaml"]
    filled = re.sub(r'"<sha256 hex[^"]*>"', token_sha256("example-token"), teams)
    assert filled != teams, "placeholder not found"
    (tmp_path / "teams.yaml").write_text(filled)
    auth = Authenticator.from_file(tmp_path / "teams.yaml")
    assert auth.team_for("example-token").name == "training"
    assert auth.team_for("another-token") is None


def test_reward_server_pods_let_bwrap_build_the_code_sandbox() -> None:
    """What bwrap needs in a pod (issue 16 §9): its own user namespace, a seccomp profile that allows unshare and
    mount (shipped in deploy/, generated from the sandbox's own lists), AppArmor unconfined, /proc unmasked, /tmp."""
    pod = pod_specs()["reward-server"]["spec"]
    assert pod["hostUsers"] is False
    profile = pod["securityContext"]["seccompProfile"]
    assert profile["type"] == "Localhost"
    shipped = REPO / "deploy" / Path(profile["localhostProfile"]).name
    assert shipped.exists(), f"{profile['localhostProfile']} is not shipped in deploy/"
    rules = json.loads(shipped.read_text())
    assert rules == container_profile()
    denied = set(rules["syscalls"][0]["names"])
    assert rules["defaultAction"] == "SCMP_ACT_ALLOW" and not denied & {"clone", "unshare", "mount", "pivot_root"}
    assert {"bpf", "kexec_load", "init_module", "perf_event_open", "ptrace", "keyctl"} <= denied
    security = container("reward-server")["securityContext"]
    assert security["appArmorProfile"] == {"type": "Unconfined"} and security["procMount"] == "Unmasked"
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container("reward-server")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # the sandbox slots (and nothing else) live there
    config = yaml.safe_load(objects("ConfigMap")["reward-server-config"]["data"]["config.yaml"])
    assert load_config(None, **config).code_execution is True
