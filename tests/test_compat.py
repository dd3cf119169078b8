"""Old clients keep working: a client built on the PREVIOUS generated code (``tests/legacy_v1``, before
prompt_text, typed_fields, completion_ids, extra columns and catalogue versions) against the real server of today.

The old client runs in a subprocess whose ``sys.path`` puts ``tests/legacy_v1`` first, so ``import reward.v1``
is the old code (the subprocess checks that its ``Sample`` has no ``prompt_text``). It sends what old clients
sent: a plain prompt as one "user" turn, every field as a string. Its scores must equal what the rewards compute
in-process and what today's client gets; its errors carry the same status codes and messages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import subprocess
import sys

import grpc
import pytest
from conftest import REPO, start_server, stop_server
from google.protobuf import descriptor_pb2

import reward_server.rewards  # noqa: F401 - registers the catalogue for in-process reference values
from reward.v1 import reward_pb2 as pb
from reward.v1 import reward_pb2_grpc
from reward.values import to_value, value_text
from reward_server.registry import REGISTRY, Batch
from trainer_client import RewardClient, RewardServiceError

LEGACY = REPO / "tests" / "legacy_v1"
#: sha256 of the legacy generated files, byte-exact from the parent of commit 301e5d9, and of the serialized
#: FileDescriptorProto that reward_pb2.py registers.
LEGACY_SHA256 = {
    "reward_pb2.py": "9bc5b3f0ca67740c7343ac82537ef3c795ebbcf9a7d57524b0c655edcb91d7ff",
    "reward_pb2_grpc.py": "70c49d2840e1a7cef1c38e8a850ef6e9aa473b9f9bef203f85cfc53dc74eea3e",
}
LEGACY_DESCRIPTOR_SHA256 = "722b6169bbac317ef35f868c699e4fa1f14ca1d9874ae09020a316cb0e659d6f"
#: The built-in rewards that existed before the contract was extended (sentiment needs a model: left out).
OLD_BUILTINS = [
    "answer_check",
    "boxed_accuracy",
    "format_approximate",
    "format_exact",
    "math_equivalence",
    "number_check",
    "solution_levenshtein",
    "tfidf_similarity",
    "think_boxed_format",
    "xml_correctness",
    "xml_integer",
    "xml_soft_format",
    "xml_strict_format",
    "xml_tag_count",
]
REASONED = "<reasoning>\nweil\n</reasoning>\n<answer>\n42\n</answer>\n"
SAMPLES = [
    {"prompt": "6*7?", "completion": REASONED, "fields": {"answer": "42", "solution": "6*7 = 42"}},
    {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "6*7?"}],
        "completion": "<start_working_out>6*7<end_working_out><SOLUTION>42</SOLUTION>",
        "fields": {"answer": "42", "solution": "sechs mal sieben"},
    },
    {
        "prompt": "1/2?",
        "completion": "<think>\nhalf\n</think>\nSo \\boxed{\\frac{1}{2}}",
        "fields": {"answer": "0.5", "solution": "1/2"},
    },
    {"prompt": "2+2?", "completion": "", "fields": {"answer": "4", "solution": ""}},
]
#: Requests every server must refuse, with the status the old client saw before (and today's client sees).
REFUSED = {
    "unknown reward": ([SAMPLES[0]], [{"name": "correctness_reward_fun"}], "INVALID_ARGUMENT"),
    "missing field": ([{"prompt": "q", "completion": "x", "fields": {}}], [{"name": "xml_correctness"}], None),
    "bad param type": ([SAMPLES[0]], [{"name": "xml_correctness", "params": {"value": "two"}}], None),
    "unknown param": ([SAMPLES[0]], [{"name": "xml_integer", "params": {"bonus": 1}}], None),
    "no rewards": ([SAMPLES[0]], [], None),
    "model not enabled": ([SAMPLES[0]], [{"name": "sentiment_match"}], "FAILED_PRECONDITION"),
}

# The old client: reads {"address", "cases"} on stdin, answers JSON on stdout. Only the legacy code is imported.
OLD_CLIENT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import base64, grpc
# Nothing else imported first: the legacy module must import what it needs itself (struct_pb2).
from reward.v1 import reward_pb2 as pb, reward_pb2_grpc
assert pb.__file__.startswith(sys.argv[1]), pb.__file__
assert "prompt_text" not in pb.Sample.DESCRIPTOR.fields_by_name
assert "typed_fields" not in pb.Sample.DESCRIPTOR.fields_by_name
assert "catalogue_version" not in pb.ScoreResponse.DESCRIPTOR.fields_by_name
spec = json.load(sys.stdin)
stub = reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(spec["address"]))

def sample(s):
    prompt = s.get("prompt") or []
    if isinstance(prompt, str):  # what old clients did with a plain prompt
        prompt = [{"role": "user", "content": prompt}]
    return pb.Sample(
        prompt=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in prompt],
        completion=s["completion"],
        fields={k: str(v) for k, v in s.get("fields", {}).items()},
    )

def reward(r):
    out = pb.RewardSpec(name=r["name"])
    if "weight" in r:
        out.weight = r["weight"]
    out.params.update(r.get("params", {}))
    return out

answers = {}
for name, (samples, rewards) in spec["cases"].items():
    request = pb.ScoreRequest(samples=[sample(s) for s in samples], rewards=[reward(r) for r in rewards])
    try:
        response = stub.Score(request, timeout=60)
    except grpc.RpcError as exc:
        answers[name] = {"code": exc.code().name, "details": exc.details()}
        continue
    answers[name] = {
        "names": [r.name for r in response.results],
        "scores": [list(r.scores) for r in response.results],
        "notes": [{n.sample_index: n.reason for n in r.notes} for r in response.results],
        "total": list(response.total),
    }
catalogue = stub.ListRewards(pb.ListRewardsRequest(), timeout=30)
answers["_catalogue"] = [
    {"name": r.name, "aliases": list(r.aliases), "fields": list(r.fields), "available": r.available,
     "params": [[p.name, int(p.type)] for p in r.params]}
    for r in catalogue.rewards
]
answers["_descriptor"] = base64.b64encode(pb.DESCRIPTOR.serialized_pb).decode()
json.dump(answers, sys.stdout)
"""


def same(a: list[float], b: list[float]) -> bool:
    """Equal lists of scores, NaN equal to NaN."""
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def in_process(name: str, samples: list[dict]) -> list[float]:
    """What the reward function itself computes on these completions and (text) fields."""
    reward = REGISTRY.get(name)
    params = reward.validate_params({})
    columns = {p.name: [s["fields"][p.default] for s in samples] for p in reward.params if p.is_field}
    return reward.score_batch(Batch([s["completion"] for s in samples], columns), **params).scores


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("compat"), config="workers: 1\nmath_timeout_s: 2.0\n")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def old_client(server, tmp_path_factory):
    """Every case of this module sent once by the old client (one subprocess): case name → its answer."""
    cases = {"built-ins": (SAMPLES, [{"name": n} for n in OLD_BUILTINS])}
    cases["weighted aliases"] = (
        SAMPLES,
        [{"name": "correctness_reward_func", "weight": 0.5}, {"name": "int_reward_func", "params": {"value": 1.0}}],
    )
    cases.update({name: (samples, rewards) for name, (samples, rewards, _) in REFUSED.items()})
    done = subprocess.run(
        [sys.executable, "-c", OLD_CLIENT, str(LEGACY)],
        input=json.dumps({"address": server.address, "cases": cases}),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path_factory.mktemp("old-client"),  # not the repository: nothing but LEGACY provides reward.v1
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def client(server):
    with RewardClient(server.address, deadline_s=60) as c:
        yield c


def test_the_old_client_really_is_the_old_code(old_client) -> None:
    # Byte for byte what protoc 7.35.1 / grpcio-tools 1.85.1 generated before the contract was extended (the parent
    # of commit 301e5d9: `git show 301e5d9^:reward/v1/reward_pb2.py`), and the descriptor the old client loaded.
    files = {name: hashlib.sha256((LEGACY / "reward" / "v1" / name).read_bytes()).hexdigest() for name in LEGACY_SHA256}
    assert files == LEGACY_SHA256
    served = base64.b64decode(old_client["_descriptor"])
    assert hashlib.sha256(served).hexdigest() == LEGACY_DESCRIPTOR_SHA256
    old = descriptor_pb2.FileDescriptorProto.FromString(served)
    assert "prompt_text" not in {f.name for m in old.message_type if m.name == "Sample" for f in m.field}
    # Wire compatibility: every field the old code knows is in today's contract with its number, type and label.
    new = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(new)
    today = {(m.name, f.name): f for m in new.message_type for f in m.field}
    for message in old.message_type:
        for field in message.field:
            now = today[message.name, field.name]
            assert (now.number, now.type, now.label, now.type_name) == (
                field.number,
                field.type,
                field.label,
                field.type_name,
            ), f"{message.name}.{field.name}"


def test_old_requests_score_as_the_rewards_compute_them(old_client, client) -> None:
    answer = old_client["built-ins"]
    assert answer["names"] == OLD_BUILTINS
    for name, scores in zip(OLD_BUILTINS, answer["scores"], strict=True):
        assert same(scores, in_process(name, SAMPLES)), name
    assert answer["scores"][OLD_BUILTINS.index("xml_correctness")] == [2.0, 0.0, 0.0, 0.0]
    assert answer["scores"][OLD_BUILTINS.index("math_equivalence")][2] == 1.0
    # Today's client (prompt_text for plain prompts) gets the very same numbers for the same samples.
    new = client.score(SAMPLES, OLD_BUILTINS)
    for name, scores in zip(OLD_BUILTINS, answer["scores"], strict=True):
        assert same(scores, new[name]), name
    assert same(answer["total"], new.total)


def test_old_requests_with_aliases_weights_and_params(old_client, client) -> None:
    answer = old_client["weighted aliases"]
    assert answer["names"] == ["xml_correctness", "xml_integer"]  # aliases resolved, as before
    rewards = [{"name": "correctness_reward_func", "weight": 0.5}, {"name": "int_reward_func", "params": {"value": 1}}]
    new = client.score(SAMPLES, rewards)
    assert answer["scores"] == [new["correctness_reward_func"], new["int_reward_func"]]
    assert answer["total"] == new.total == [0.5 * 2.0 + 1.0, 0.0, 0.0, 0.0]


def test_old_requests_are_refused_with_the_same_codes_and_messages(old_client, client) -> None:
    for case, (samples, rewards, code) in REFUSED.items():
        old = old_client[case]
        assert "code" in old, f"{case}: the server scored it: {old}"
        with pytest.raises(RewardServiceError) as caught:
            client.score(samples, rewards)
        assert (old["code"], old["details"]) == (caught.value.code.name, caught.value.details), case
        assert old["code"] == (code or "INVALID_ARGUMENT"), case
    assert "samples[0] has no field 'answer'" in old_client["missing field"]["details"]
    assert "correctness_reward_func" in old_client["unknown reward"]["details"]


def test_list_rewards_works_for_the_old_client(old_client, client) -> None:
    old = {r["name"]: r for r in old_client["_catalogue"]}
    new = {r.name: r for r in client.list_rewards()}
    assert list(old) == sorted(new)
    for name, info in new.items():
        assert (old[name]["aliases"], old[name]["fields"], old[name]["available"]) == (
            info.aliases,
            info.fields,
            info.available,
        ), name
        assert [p[0] for p in old[name]["params"]] == [p.name for p in info.params], name
    # Param types the old client knows keep their numbers (string 1, number 2, bool 3).
    assert dict(old["xml_correctness"]["params"])["value"] == 2
    assert dict(old["xml_correctness"]["params"])["reference_field"] == 1


TYPED = [  # column values with their JSON types; value_text of each is what a text-reading reward sees
    {"prompt": "6*7?", "completion": REASONED, "fields": {"answer": 42, "solution": {"steps": [6, 7], "ok": True}}},
    {"prompt": "1/2?", "completion": "\\boxed{0.5}", "fields": {"answer": 0.5, "solution": [1, "/", 2]}},
    {"prompt": "yes?", "completion": "<answer>True</answer>", "fields": {"answer": True, "solution": None}},
    {"prompt": "2+2?", "completion": "<answer>4</answer>", "fields": {"answer": -4, "solution": 12.25}},
]


def test_typed_fields_score_as_their_text_for_the_built_ins(client) -> None:
    as_text = [{**s, "fields": {k: value_text(v) for k, v in s["fields"].items()}} for s in TYPED]
    typed = client.score(TYPED, OLD_BUILTINS)
    text = client.score(as_text, OLD_BUILTINS)
    for name in OLD_BUILTINS:
        assert same(typed[name], text[name]), name
    assert typed["xml_correctness"] == [2.0, 0.0, 2.0, 0.0]  # 42 == "42", True == "True"
    assert typed["math_equivalence"][1] == 1.0  # 0.5
    # The same samples through a client told not to send typed fields (for servers older than them).
    with RewardClient(client.target, typed_fields=False) as untyped:
        plain = untyped.score(TYPED, OLD_BUILTINS)
    for name in OLD_BUILTINS:
        assert same(plain[name], typed[name]), name


def test_a_key_in_both_maps_is_refused(client) -> None:
    # Not something RewardClient can send (one dict per sample); a hand-built request shows the server's rule.
    sample = pb.Sample(completion="x", fields={"answer": "4"}, typed_fields={"answer": to_value(4)})
    request = pb.ScoreRequest(samples=[sample], rewards=[pb.RewardSpec(name="xml_correctness")])
    with pytest.raises(grpc.RpcError) as caught:
        reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(client.target)).Score(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[0]: field 'answer' is in both fields and typed_fields" in caught.value.details()
