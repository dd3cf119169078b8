"""The HTTP/JSON transport (issue 17): every route against a plain gRPC Score of the same samples, on one real server
process (gRPC and HTTP ports, loopback sockets).

Here every route's request is also rebuilt from the trainer's source at a pinned commit and sent with aiohttp as the
trainer sends it (slime is not on PyPI, so this is all there is for it; OpenRLHF's and NeMo Gym's own released code
drive the routes too, in tests/test_http_openrlhf_package.py and tests/test_trainers_nemo_gym_package.py):
- OpenRLHF 3c3be62 ``openrlhf/utils/agent.py`` ``_fetch_rewards_via_http`` (one sample per POST, ``json=payload``,
  ``ClientTimeout(total=180)``, ``raise_for_status``, ``response.json()``), and the batch form of v0.8.11 (ac3689e)
  ``remote_rm_fn_ray`` (one POST per rollout batch; several URLs get shards, the extra ones empty lists);
- slime 624b824 ``slime/rollout/rm_hub/__init__.py`` ``remote_rm`` (``{"prompt", "response", "label"}``);
- NeMo Gym 07d6b0d ``BaseVerifyRequest`` (``responses_create_params`` + a Responses-API ``response``, the row's
  other keys beside them).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
import time

import aiohttp
import grpc
import httpx
import pytest
from conftest import REPO, start_server, stop_server
from test_proto import buf_executable

from reward.v1 import reward_pb2 as pb
from reward.v1 import reward_pb2_grpc

PLUGIN = '''
import time

from reward_server import SampleScore, sample_reward


def flaky_reward(completions, **kwargs):
    """1.0 per completion; raises (a reward with a bug) when a completion (text or chat turns) says BOOM, and takes
    2 s when one says SLOW."""
    if any("BOOM" in str(c) for c in completions):
        raise RuntimeError("flaky_reward cannot score BOOM")
    if any("SLOW" in str(c) for c in completions):
        time.sleep(2)
    return [1.0 for _ in completions]


@sample_reward("picky_reward")
def picky_reward(completion: str) -> float | SampleScore:
    """1.0, or does not apply (NaN, NOT_APPLICABLE) to a completion that says SKIP."""
    if "SKIP" in completion:
        return SampleScore(None, note="nothing to judge")
    return 1.0
'''

CONFIG = """
http_port: 0
workers: 1
profiles:
  gsm8k:
    rewards: [{name: xml_correctness}, {name: xml_tag_count, weight: 0.5}]
    label_field: answer
    gym_root: true
  graded:
    rewards: [{name: xml_correctness}, {name: xml_tag_count, weight: 0.5}]
    scores: xml_correctness
    slime_reward_key: reward
  flaky:
    rewards: [{name: flaky_reward, weight: 2}, {name: xml_tag_count}]
    failure_value: -1.0
    slime_reward_key: reward
  strict:
    rewards: [{name: flaky_reward}]
    on_failure: error
  bare:
    rewards: [{name: flaky_reward}]
  marked:
    rewards: [{name: flaky_reward, weight: 2}, {name: xml_tag_count}]
    failure_value: -1.0
    on_failure: marker
  hasty:
    rewards: [{name: flaky_reward}]
    deadline_s: 0.3
    failure_value: -2.0
  picky:
    rewards: [{name: picky_reward}]
    on_failure: error
  tokens:
    rewards: [{name: xml_correctness}, {name: xml_tag_count, weight: 0.5}]
    special_tokens: ["<END>"]
"""
GSM8K = [pb.RewardSpec(name="xml_correctness"), pb.RewardSpec(name="xml_tag_count", weight=0.5)]
PROMPT = "<|im_start|>user\nWhat is 6 x 7?<|im_end|>\n<|im_start|>assistant\n"
COMPLETIONS = [
    "<reasoning>\n6 x 7\n</reasoning>\n<answer>\n42\n</answer>\n",
    "<answer>\n41\n</answer>",
    "It is 42.",
    "<reasoning>\nx\n</reasoning>\n<answer>\n42\n</answer>\n trailing",
]
LABELS = ["42", "42", "42", "42"]


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    plugin = tmp / "flaky.py"
    plugin.write_text(PLUGIN)
    server = start_server(tmp, "--rewards-from", str(plugin), "--metrics-port", "0", config=CONFIG)
    server.http = re.search(r"HTTP/JSON on (\S+)", server.log()).group(1)
    yield server
    stop_server(server)


def grpc_totals(server, completions, labels, rewards=GSM8K, prompt=PROMPT) -> list[float]:
    samples = [
        pb.Sample(completion=c, prompt_text=prompt, fields={"answer": a})
        for c, a in zip(completions, labels, strict=True)
    ]
    return list(server.stub().Score(pb.ScoreRequest(samples=samples, rewards=rewards), timeout=60).total)


async def openrlhf_post(url: str, payload: dict) -> dict:
    """OpenRLHF's ``_post_request`` (one try): aiohttp, ``json=payload``, 180 s total, raise_for_status, json()."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:  # noqa: SIM117 - as OpenRLHF
        async with session.post(url, json=payload) as response:
            response.raise_for_status()
            return await response.json()


def openrlhf_payload(completions, labels) -> dict:
    # query = the decoded prompt + response tokens, special tokens kept (skip_special_tokens=False)
    return {
        "query": [PROMPT + c + "<|im_end|>\n<|endoftext|>" for c in completions],
        "prompts": [PROMPT] * len(completions),
        "labels": list(labels),
    }


def test_openrlhf_batch_form_gives_the_grpc_totals(http_server) -> None:
    answer = asyncio.run(openrlhf_post(f"{http_server.http}/openrlhf/gsm8k", openrlhf_payload(COMPLETIONS, LABELS)))
    totals = grpc_totals(http_server, COMPLETIONS, LABELS)
    assert answer["rewards"] == totals
    assert answer["scores"] == totals
    assert set(answer["extra_logs"]) == {"xml_correctness", "xml_tag_count", "reward_failed"}
    assert answer["extra_logs"]["xml_correctness"] == [2.0, 0.0, 0.0, 2.0]
    assert answer["extra_logs"]["reward_failed"] == [0.0] * 4


def test_openrlhf_several_urls_the_extra_ones_get_empty_lists(http_server) -> None:
    # v0.8.11 remote_rm_fn_ray: 2 samples over 3 URLs -> shards of 1, 1 and 0 samples; merged key by key.
    url = f"{http_server.http}/openrlhf/gsm8k"
    shards = [openrlhf_payload(COMPLETIONS[i : i + 1], LABELS[i : i + 1]) for i in (0, 1)]
    shards.append(openrlhf_payload([], []))

    async def main():
        return await asyncio.gather(*(openrlhf_post(url, s) for s in shards))

    answers = asyncio.run(main())
    assert answers[2] == {
        "rewards": [],
        "scores": [],
        "extra_logs": {"xml_correctness": [], "xml_tag_count": [], "reward_failed": []},
    }
    assert [a["rewards"][0] for a in answers[:2]] == grpc_totals(http_server, COMPLETIONS[:2], LABELS[:2])
    assert all(set(a["extra_logs"]) == set(answers[2]["extra_logs"]) for a in answers)


def test_64_concurrent_per_sample_openrlhf_calls_all_succeed_with_the_grpc_totals(http_server) -> None:
    completions = [COMPLETIONS[i % 4] + " " * (i // 4) for i in range(64)]
    url = f"{http_server.http}/openrlhf/gsm8k"

    async def main():
        calls = [openrlhf_post(url, openrlhf_payload([c], ["42"])) for c in completions]
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(main())
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert not failed, failed[:3]
    assert [a["rewards"][0] for a in answers] == grpc_totals(http_server, completions, ["42"] * 64)


def test_openrlhf_scores_can_name_one_reward(http_server) -> None:
    answer = asyncio.run(openrlhf_post(f"{http_server.http}/openrlhf/graded", openrlhf_payload(COMPLETIONS, LABELS)))
    assert answer["scores"] == [2.0, 0.0, 0.0, 2.0]
    assert answer["rewards"] == grpc_totals(http_server, COMPLETIONS, LABELS)


def test_slime_gets_the_total_as_a_bare_number_or_the_object_form(http_server) -> None:
    for completion in COMPLETIONS:
        # slime's remote_rm payload: sample.prompt (text or messages), sample.response, sample.label
        bare = httpx.post(
            f"{http_server.http}/slime/gsm8k", json={"prompt": PROMPT, "response": completion, "label": "42"}
        )
        assert bare.status_code == 200, bare.text
        assert bare.json() == grpc_totals(http_server, [completion], ["42"])[0]
    tagged = httpx.post(
        f"{http_server.http}/slime/gsm8k",
        json={"prompt": PROMPT, "response": COMPLETIONS[0], "label": "42"},
        headers={"x-request-id": "step-7-sample-3"},
    )
    assert tagged.headers["x-request-id"] == "step-7-sample-3"
    assert "Score request_id=step-7-sample-3 samples=1" in http_server.log()
    messages = [{"role": "user", "content": "What is 6 x 7?"}]
    obj = httpx.post(
        f"{http_server.http}/slime/graded", json={"prompt": messages, "response": COMPLETIONS[0], "label": "42"}
    ).json()
    total = grpc_totals(http_server, COMPLETIONS[:1], ["42"])[0]
    assert obj["reward"] == total
    assert obj["failed"] is False
    assert obj["xml_correctness"] == 2.0


def gym_body(completion: str, answer: str = "42") -> dict:
    return {
        "responses_create_params": {"input": [{"role": "user", "content": "What is 6 x 7?"}]},
        "response": {
            "id": "resp_1",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": completion, "annotations": []}],
                },
            ],
        },
        "answer": answer,
        "id": 7,
    }


def test_gym_verify_echoes_the_body_with_reward_and_components(http_server) -> None:
    seeded = httpx.post(f"{http_server.http}/gym/gsm8k/seed_session", json={})
    assert seeded.status_code == 200 and seeded.json() == {}
    totals = grpc_totals(http_server, COMPLETIONS, LABELS)
    for completion, total in zip(COMPLETIONS, totals, strict=True):
        body = gym_body(completion)
        answer = httpx.post(f"{http_server.http}/gym/gsm8k/verify", json=body).json()
        assert answer["reward"] == total
        assert math.isclose(sum(answer["reward_components"].values()), answer["reward"])
        assert set(answer["reward_components"]) == {"xml_correctness", "xml_tag_count"}
        assert answer["instance_config"] == {"mask_sample": False}
        assert {k: answer[k] for k in body} == body
        # gym_root: the same profile at the root, where a Gym agent posts (http://host:port/verify)
        assert httpx.post(f"{http_server.http}/verify", json=body).json() == answer


def test_connect_score_and_list_rewards_in_canonical_json(http_server) -> None:
    body = {
        "samples": [{"completion": c, "promptText": PROMPT, "fields": {"answer": "42"}} for c in COMPLETIONS],
        "rewards": [{"name": "xml_correctness"}, {"name": "xml_tag_count", "weight": 0.5}],
    }
    reply = httpx.post(f"{http_server.http}/reward.v1.RewardService/Score", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["total"] == grpc_totals(http_server, COMPLETIONS, LABELS)
    listed = httpx.post(f"{http_server.http}/reward.v1.RewardService/ListRewards", json={}).json()
    assert "xml_correctness" in [r["name"] for r in listed["rewards"]]
    refused = httpx.post(f"{http_server.http}/reward.v1.RewardService/Score", json={"rewards": [{"name": "nope"}]})
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_argument"
    assert "unknown reward 'nope'" in refused.json()["message"]


def test_buf_curl_speaks_connect_to_the_http_port(http_server) -> None:
    """buf curl --protocol connect: the buf ecosystem's own Connect client, with the repository's .proto."""
    body = {
        "samples": [{"completion": COMPLETIONS[0], "fields": {"answer": "42"}}],
        "rewards": [{"name": "xml_correctness"}],
    }
    result = subprocess.run(
        [buf_executable(), "curl", "--protocol", "connect", "--schema", "proto", "-d", json.dumps(body),
         f"{http_server.http}/reward.v1.RewardService/Score"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"] == [2.0]


def test_bad_input_is_a_4xx_naming_the_problem_and_the_server_keeps_serving(http_server) -> None:
    base = http_server.http
    malformed = httpx.post(
        f"{base}/openrlhf/gsm8k", content=b'{"query": [', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert "not JSON" in malformed.json()["message"]
    no_label = httpx.post(f"{base}/openrlhf/gsm8k", json={"query": ["a", "b"], "prompts": ["", ""]})
    assert no_label.status_code == 400
    assert "samples[0] has no field 'answer'" in no_label.json()["message"]
    short = httpx.post(f"{base}/openrlhf/gsm8k", json={"query": ["a", "b"], "labels": ["42"]})
    assert short.status_code == 400 and "labels: expected a list of 2 entries" in short.json()["message"]
    wrong_type = httpx.post(f"{base}/openrlhf/gsm8k", json={"query": ["a", 3], "labels": ["1", "2"]})
    assert wrong_type.status_code == 400 and "query[1]: expected a string" in wrong_type.json()["message"]
    unknown = httpx.post(f"{base}/openrlhf/nope", json={"query": []})
    assert unknown.status_code == 404 and "unknown profile 'nope'" in unknown.json()["message"]
    gym = httpx.post(f"{base}/gym/gsm8k/verify", json={"responses_create_params": {}, "response": {"output": 1}})
    assert gym.status_code == 400 and "response.output" in gym.json()["message"]
    still = httpx.post(f"{base}/slime/gsm8k", json={"prompt": "", "response": COMPLETIONS[0], "label": "42"})
    assert still.status_code == 200


def test_a_failed_reward_is_a_flagged_marker_a_mask_or_an_error_never_a_silent_zero(http_server) -> None:
    base = http_server.http
    answer = asyncio.run(openrlhf_post(f"{base}/openrlhf/flaky", openrlhf_payload(["BOOM"], ["42"])))
    assert answer["rewards"] == [-1.0] and answer["extra_logs"]["reward_failed"] == [1.0]
    fine = asyncio.run(openrlhf_post(f"{base}/openrlhf/flaky", openrlhf_payload(["fine"], ["42"])))
    assert fine["extra_logs"]["reward_failed"] == [0.0]
    assert fine["rewards"] == grpc_totals(
        http_server,
        ["fine"],
        ["42"],
        [pb.RewardSpec(name="flaky_reward", weight=2), pb.RewardSpec(name="xml_tag_count")],
    )
    slime = httpx.post(f"{base}/slime/flaky", json={"prompt": "q", "response": "BOOM", "label": "42"}).json()
    assert slime["failed"] is True and slime["reward"] == -1.0 and "flaky_reward" in slime["failure"]
    bare = httpx.post(f"{base}/slime/gsm8k", json={"prompt": "q", "response": "x", "label": "42"})
    assert bare.status_code == 200  # scored (0 is this sample's real score, not a failure)
    gym = httpx.post(f"{base}/gym/flaky/verify", json=gym_body("BOOM")).json()
    # on_failure: mask (the default): NeMo RL drops it; the number it carries is failure_value
    assert gym["instance_config"]["mask_sample"] is True
    assert gym["reward"] == -1.0 and gym["reward_failed"] is True and "flaky_reward" in gym["reward_failure"]
    strict = httpx.post(f"{base}/openrlhf/strict", json={"query": ["ok", "BOOM"], "labels": ["1", "2"]})
    assert strict.status_code == 500
    assert strict.json()["code"] == "internal" and "sample 0 failed (reward_error)" in strict.json()["message"]


def test_profiles_are_listed_and_requests_counted_by_transport(http_server) -> None:
    listed = httpx.get(f"{http_server.http}/profiles").json()["profiles"]
    assert set(listed) == {"gsm8k", "graded", "flaky", "strict", "bare", "marked", "hasty", "picky", "tokens"}
    assert listed["gsm8k"]["on_failure"] == "mask" and listed["marked"]["on_failure"] == "marker"
    assert listed["gsm8k"]["rewards"] == [{"name": "xml_correctness"}, {"name": "xml_tag_count", "weight": 0.5}]
    assert listed["gsm8k"]["deadline_s"]["openrlhf"] < 180 and listed["gsm8k"]["deadline_s"]["slime"] < 120
    port = re.search(r"metrics on http://\S+:(\d+)/metrics", http_server.log()).group(1)
    page = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'method="/openrlhf/gsm8k",team="-",transport="http"' in page
    assert 'code="NOT_FOUND",method="/openrlhf/{profile}",team="-",transport="http"' in page
    assert 'method="/reward.v1.RewardService/Score",team="-",transport="grpc"' in page
    assert re.search(r"Score request_id=\S+ samples=64|transport=http", http_server.log())


def test_grpc_and_http_share_one_error_mapping(http_server) -> None:
    """The same refused request: gRPC's code and the HTTP status HTTP_STATUS gives that code."""
    from reward_server.transport.api import HTTP_STATUS

    with pytest.raises(grpc.RpcError) as caught:
        http_server.stub().Score(pb.ScoreRequest(samples=[pb.Sample(completion="x")], rewards=[]), timeout=30)
    reply = httpx.post(f"{http_server.http}/reward.v1.RewardService/Score", json={"samples": [{"completion": "x"}]})
    assert reply.status_code == HTTP_STATUS[caught.value.code()] == 400
    assert reply.json()["message"] == caught.value.details()


def test_small_calls_waiting_behind_a_large_one_are_not_stranded(http_server) -> None:
    """Coalescing: one-sample calls that queue while a large call (its own worker trips) holds the pool go as soon
    as it finishes, over both transports (they used to wait for the next call to arrive)."""
    large = [COMPLETIONS[i % 4] + " " * (i % 7) for i in range(20000)]

    async def main():
        async with grpc.aio.insecure_channel(http_server.address) as channel:
            stub = reward_pb2_grpc.RewardServiceStub(channel)
            samples = [pb.Sample(completion=c, prompt_text=PROMPT, fields={"answer": "42"}) for c in large]
            big = asyncio.ensure_future(stub.Score(pb.ScoreRequest(samples=samples, rewards=GSM8K), timeout=60))
            await asyncio.sleep(0.05)  # the large call holds the worker now (it takes about a second)
            small = [stub.Score(pb.ScoreRequest(samples=[samples[i]], rewards=GSM8K), timeout=20) for i in range(8)]
            url = f"{http_server.http}/openrlhf/gsm8k"
            posts = [openrlhf_post(url, openrlhf_payload([c], ["42"])) for c in large[:8]]
            return await asyncio.gather(big, *small, *posts)

    answers = asyncio.run(main())
    totals = grpc_totals(http_server, large[:8], ["42"] * 8)
    assert list(answers[0].total[:8]) == totals
    assert [a.total[0] for a in answers[1:9]] == totals
    assert [a["rewards"][0] for a in answers[9:]] == totals


def test_a_sample_no_reward_applies_to_is_no_failure_and_totals_zero_on_every_route(http_server) -> None:
    """gRPC Score's total is NaN where no reward applies (every note NOT_APPLICABLE); every route sends 0.0 there
    (TRL's nansum of nothing, as the in-process adapters do), unflagged, even under on_failure: error."""
    base = http_server.http
    (total,) = grpc_totals(http_server, ["SKIP"], ["42"], [pb.RewardSpec(name="picky_reward")])
    assert math.isnan(total)
    answer = asyncio.run(openrlhf_post(f"{base}/openrlhf/picky", openrlhf_payload(["SKIP", "ok"], ["42", "42"])))
    assert answer["rewards"] == [0.0, 1.0] and answer["scores"] == [0.0, 1.0]
    assert answer["extra_logs"] == {"picky_reward": [0.0, 1.0], "reward_failed": [0.0, 0.0]}
    bare = httpx.post(f"{base}/slime/picky", json={"prompt": "q", "response": "SKIP", "label": "42"})
    assert bare.status_code == 200 and bare.json() == 0.0  # slime would retry a 4xx/5xx 10 times, then stop
    gym = httpx.post(f"{base}/gym/picky/verify", json=gym_body("SKIP")).json()
    assert gym["reward"] == 0.0 and gym["reward_components"] == {"picky_reward": 0.0}
    assert gym["reward_failed"] is False and gym["instance_config"]["mask_sample"] is False


def test_on_failure_mask_and_marker_differ_on_gym_and_error_is_an_error_status(http_server) -> None:
    base = http_server.http
    marked = httpx.post(f"{base}/gym/marked/verify", json=gym_body("BOOM")).json()
    # marker: trained on, at failure_value, flagged; never dropped
    assert marked["instance_config"]["mask_sample"] is False
    assert marked["reward"] == -1.0 and marked["reward_failed"] is True and "flaky_reward" in marked["reward_failure"]
    masked = httpx.post(f"{base}/gym/flaky/verify", json=gym_body("BOOM")).json()
    assert masked["instance_config"]["mask_sample"] is True and masked["reward"] == -1.0
    fine = httpx.post(f"{base}/gym/marked/verify", json=gym_body("fine")).json()
    assert fine["instance_config"]["mask_sample"] is False and fine["reward_failed"] is False
    specs = [pb.RewardSpec(name="flaky_reward", weight=2), pb.RewardSpec(name="xml_tag_count")]
    assert fine["reward"] == grpc_totals(http_server, ["fine"], ["42"], specs)[0]
    strict = httpx.post(f"{base}/gym/strict/verify", json=gym_body("BOOM"))
    assert strict.status_code == 500, strict.text
    assert strict.json()["code"] == "internal" and "sample 0 failed (reward_error)" in strict.json()["message"]
    assert httpx.post(f"{base}/gym/strict/verify", json=gym_body("fine")).json()["reward"] == 1.0


def test_slime_bare_number_cannot_carry_a_failure_so_it_is_an_error_status(http_server) -> None:
    """Without slime_reward_key the answer is a bare number: a failed sample is an error (slime retries, then
    stops), whatever on_failure says, never a number slime would train on."""
    failed = httpx.post(f"{http_server.http}/slime/bare", json={"prompt": "q", "response": "BOOM", "label": "42"})
    assert failed.status_code == 500, failed.text
    assert failed.json()["code"] == "internal"
    assert "sample 0 failed (reward_error): flaky_reward:" in failed.json()["message"]
    fine = httpx.post(f"{http_server.http}/slime/bare", json={"prompt": "q", "response": "fine", "label": "42"})
    assert fine.status_code == 200 and fine.json() == 1.0


def test_a_profile_deadline_running_out_fails_the_samples_as_time_limit_flagged(http_server) -> None:
    """deadline_s: 0.3 against a reward that takes 2 s: the answer comes at the deadline, every sample failed with
    TIME_LIMIT, carrying failure_value and the flag (OpenRLHF), masked and saying why (Gym)."""
    base = http_server.http
    start = time.monotonic()
    answer = asyncio.run(openrlhf_post(f"{base}/openrlhf/hasty", openrlhf_payload(["SLOW", "SLOW"], ["42", "42"])))
    assert time.monotonic() - start < 1.8  # answered at the deadline, not when the reward finished
    assert answer["rewards"] == [-2.0, -2.0] and answer["scores"] == [-2.0, -2.0]
    assert answer["extra_logs"] == {"flaky_reward": [-2.0, -2.0], "reward_failed": [1.0, 1.0]}
    gym = httpx.post(f"{base}/gym/hasty/verify", json=gym_body("SLOW"), timeout=30).json()
    assert gym["instance_config"]["mask_sample"] is True and gym["reward"] == -2.0
    assert "not scored within the deadline of 0.3 s" in gym["reward_failure"]


def test_a_custom_special_tokens_list_is_what_is_stripped(http_server) -> None:
    """special_tokens: ["<END>"] strips <END> (repeatedly, with the whitespace between) and nothing else: a default
    token such as <|im_end|> stays in the completion."""
    url = f"{http_server.http}/openrlhf/tokens"
    completion = COMPLETIONS[0]
    ended = {"query": [PROMPT + completion + "<END>\n<END>"], "prompts": [PROMPT], "labels": ["42"]}
    kept = {"query": [PROMPT + completion + "<|im_end|>"], "prompts": [PROMPT], "labels": ["42"]}
    stripped, unstripped = (asyncio.run(openrlhf_post(url, body))["rewards"][0] for body in (ended, kept))
    assert stripped == grpc_totals(http_server, [completion], ["42"])[0]
    assert unstripped == grpc_totals(http_server, [completion + "<|im_end|>"], ["42"])[0]
    assert stripped != unstripped  # xml_tag_count sees the text after </answer>
    default = asyncio.run(openrlhf_post(f"{http_server.http}/openrlhf/gsm8k", kept))["rewards"][0]
    assert default == stripped  # the default list strips <|im_end|>


def test_one_error_table_and_the_http_app_does_not_import_the_grpc_transport() -> None:
    """Every domain error has its status in api.STATUS_OF (so both transports answer it alike), every failure kind
    an error, and the HTTP app reaches the scoring API without importing the gRPC servicer."""
    import inspect

    from reward_server import errors
    from reward_server.outcomes import NoteKind
    from reward_server.transport import api
    from reward_server.transport.trainers import FAILED_KINDS

    domain = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.RewardServiceError)]
    for cls in domain:
        if cls is not errors.RewardServiceError:
            assert any(base in api.STATUS_OF for base in cls.__mro__), cls
    assert api.status_for(errors.NotFound("x")) == grpc.StatusCode.NOT_FOUND
    assert api.HTTP_STATUS[api.status_for(errors.Unauthenticated("x"))] == 401
    assert set(api.FAILURE_ERROR) == set(FAILED_KINDS) and NoteKind.NOT_APPLICABLE not in api.FAILURE_ERROR
    code = "import sys, reward_server.transport.http; print('reward_server.transport.grpc_servicer' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert imported.stdout.strip() == "False", imported.stderr
