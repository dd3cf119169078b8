"""The reward-URL protocols of OpenRLHF, slime and NeMo Gym: their JSON in, a ``ScoreRequest``; a ``ScoreResponse``
in, their JSON out. Pure functions: the HTTP app (``transport.http``) scores the request with the gRPC servicer's
own ``score_message``, so these build requests and read answers, and check nothing the scorer checks.

Followed sources (read at these commits):

- OpenRLHF ``openrlhf/utils/agent.py`` (``SingleTurnAgentExecutor._fetch_rewards_via_http``: one sample per POST,
  ``{"query": [...], "prompts": [...], "labels": [...]}``, aiohttp total timeout 180 s, 5 tries), OpenRLHF/OpenRLHF
  at 3c3be62; the batch form (one POST per rollout batch, ``remote_rm_fn_ray``; answers merged with
  ``torch.cat`` per key, so every answer carries the same keys) at v0.8.11 (ac3689e).
- slime ``slime/rollout/rm_hub/__init__.py`` (``remote_rm``: ``{"prompt", "response", "label"}``, the answer's JSON
  is the reward, or ``reward[args.reward_key]``; aiohttp total timeout 120 s, 10 tries), THUDM/slime at 624b824.
- NeMo Gym ``nemo_gym/base_resources_server.py`` (``/seed_session``, ``/verify``: ``BaseVerifyRequest`` =
  ``responses_create_params`` + ``response``; the answer echoes it with ``reward``; ``reward_components`` as in
  ``BaseMultiRewardVerifyResponse``), NVIDIA-NeMo/Gym at 07d6b0d. The completion is what the OpenAI SDK's
  ``Response.output_text`` gives: every ``output_text`` part of every ``message`` item, joined.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from reward.v1 import reward_pb2
from reward_server.errors import InvalidArgument
from reward_server.outcomes import NoteKind
from reward_server.transport.profiles import Profile

#: Outcome kinds that mean a reward failed for a sample (NOT_APPLICABLE is the reward's own "does not apply").
FAILED_KINDS = (NoteKind.REWARD_ERROR, NoteKind.UNAVAILABLE, NoteKind.TIME_LIMIT)
#: OpenRLHF's extra_logs key of the per-sample failure flag (1.0 failed, 0.0 scored).
FAILED_KEY = "reward_failed"


@dataclass(frozen=True)
class Failure:
    """Why one sample has no usable total: the kind (of its first failed reward) and a reason naming the reward."""

    kind: NoteKind
    reason: str


def failures(response: reward_pb2.ScoreResponse) -> list[Failure | None]:
    """Per sample: its first reward failure (REWARD_ERROR, UNAVAILABLE or TIME_LIMIT), or None.

    A reward that does not apply (NOT_APPLICABLE) is no failure of the service, even when no reward of the profile
    applies: that sample's total is :func:`nansum`'s 0.0, as TRL and the in-process adapters give it.
    """
    found: list[Failure | None] = [None] * len(response.total)
    for result in response.results:
        for note in result.notes:
            kind = NoteKind(note.kind)
            if kind in FAILED_KINDS and found[note.sample_index] is None:
                found[note.sample_index] = Failure(kind, f"{result.name}: {note.reason}")
    return found


def nansum(total: float) -> float:
    """The number a trainer gets for a sample that did not fail: gRPC ``Score``'s total (the weighted sum over the
    rewards that applied), or 0.0 where none applied (``Score`` says NaN there; TRL's ``nansum`` of nothing is 0.0).

    Example:
        >>> nansum(1.5), nansum(float("nan"))
        (1.5, 0.0)
    """
    return 0.0 if math.isnan(total) else total


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _set_field(sample: reward_pb2.Sample, name: str, value: Any, where: str) -> None:
    """A JSON value into the sample's field ``name``: text as a field, anything else as a typed field."""
    if value is None:
        return  # absent: a reward that reads it is refused by the scorer, naming the sample and the field
    if isinstance(value, str):
        sample.fields[name] = value
        return
    try:
        sample.typed_fields[name].CopyFrom(_value(value))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{where}: not a JSON value: {exc}") from None


def _value(value: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    struct = struct_pb2.Struct()
    struct.update({"v": value})
    out.CopyFrom(struct.fields["v"])
    return out


def _set_prompt(sample: reward_pb2.Sample, prompt: Any, where: str, profile: Profile) -> None:
    """A text prompt (``prompt_text``, or one user turn with ``prompt_shape: chat``) or chat messages."""
    if prompt is None:
        return
    if isinstance(prompt, str):
        if profile.prompt_shape == "chat":
            sample.prompt.add(role="user", content=prompt)
        else:
            sample.prompt_text = prompt
        return
    if not isinstance(prompt, list):
        raise InvalidArgument(f"{where}: expected text or a list of chat messages, got {type(prompt).__name__}")
    for j, message in enumerate(prompt):
        if not isinstance(message, Mapping) or "role" not in message:
            raise InvalidArgument(f"{where}[{j}]: expected a message with role and content")
        sample.prompt.add(role=_text(f"{where}[{j}].role", message["role"]), content=_content(f"{where}[{j}]", message))


def _content(where: str, message: Mapping[str, Any]) -> str:
    """A message's text: a string, or the text parts of a content list (Responses API ``input_text`` and chat
    ``text`` parts)."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping)
            and part.get("type") in ("input_text", "text", "output_text")
            and isinstance(part.get("text"), str)
        )
    raise InvalidArgument(f"{where}.content: expected text or a list of content parts")


def _request(profile: Profile, samples: Sequence[reward_pb2.Sample]) -> reward_pb2.ScoreRequest:
    return reward_pb2.ScoreRequest(samples=samples, rewards=profile.rewards)


# -- OpenRLHF -----------------------------------------------------------------------------------------------------


def completion_of(query: str, prompt: str | None, special_tokens: Sequence[str]) -> str:
    """OpenRLHF's ``query`` is the templated prompt + response, special tokens kept: the response is what follows
    the prompt, less trailing special tokens (and the whitespace between them).

    Example:
        >>> completion_of("<|im_start|>user\\nQ<|im_end|>\\n<|im_start|>assistant\\nA 42<|im_end|>\\n<|endoftext|>",
        ...               "<|im_start|>user\\nQ<|im_end|>\\n<|im_start|>assistant\\n", ["<|im_end|>", "<|endoftext|>"])
        'A 42'
        >>> completion_of("no prompt prefix</s>", "other", ["</s>"])
        'no prompt prefix'
    """
    text = query[len(prompt) :] if prompt and query.startswith(prompt) else query
    while True:
        stripped = text.rstrip()
        token = next((t for t in special_tokens if stripped.endswith(t)), None)
        if token is None:
            return text
        text = stripped[: -len(token)]


def openrlhf_request(profile: Profile, body: Any) -> reward_pb2.ScoreRequest:
    """``{"query": [...], "prompts": [...], "labels": [...]}`` (both the batch and the one-sample form)."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("body: expected a JSON object with query, prompts and labels")
    queries = body.get("query")
    if not isinstance(queries, list):
        raise InvalidArgument("query: expected a list of texts (the prompt + response of each sample)")
    columns: dict[str, list[Any]] = {}
    for key in ("prompts", "labels"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or len(value) != len(queries):
            got = f"{len(value)} entries" if isinstance(value, list) else type(value).__name__
            raise InvalidArgument(f"{key}: expected a list of {len(queries)} entries (one per query), got {got}")
        columns[key] = value
    samples = []
    for i, query in enumerate(queries):
        prompt = columns["prompts"][i] if "prompts" in columns else None
        prompt = None if prompt is None else _text(f"prompts[{i}]", prompt)
        sample = reward_pb2.Sample(
            completion=completion_of(_text(f"query[{i}]", query), prompt, profile.special_tokens)
        )
        _set_prompt(sample, prompt, f"prompts[{i}]", profile)
        if "labels" in columns:
            _set_field(sample, profile.label_field, columns["labels"][i], f"labels[{i}]")
        samples.append(sample)
    return _request(profile, samples)


def openrlhf_answer(
    profile: Profile, response: reward_pb2.ScoreResponse, failed: Sequence[Failure | None]
) -> dict[str, Any]:
    """``{"rewards": [...], "scores": [...], "extra_logs": {...}}`` with the same keys for every call (OpenRLHF
    merges answers key by key): each reward's scores under its name and ``reward_failed`` per sample. A failed
    sample's numbers are ``failure_value`` (finite: OpenRLHF makes tensors of them), flagged 1.0; a reward that
    does not apply to a sample that did not fail counts 0.0, its part in :func:`nansum`."""
    value = profile.failure_value
    rewards = [value if failed[i] else nansum(total) for i, total in enumerate(response.total)]
    logs = {
        result.name: [value if failed[i] else nansum(s) for i, s in enumerate(result.scores)]
        for result in response.results
    }
    scores = rewards if profile.scores == "total" else logs[profile.scores]
    logs[FAILED_KEY] = [1.0 if f else 0.0 for f in failed]
    return {"rewards": rewards, "scores": list(scores), "extra_logs": logs}


def openrlhf_empty(profile: Profile) -> dict[str, Any]:
    """The answer to an empty request (OpenRLHF sends them to its extra servers): empty lists, the same keys."""
    return {"rewards": [], "scores": [], "extra_logs": {**{n: [] for n in profile.names}, FAILED_KEY: []}}


# -- slime ----------------------------------------------------------------------------------------------------------


def slime_request(profile: Profile, body: Any) -> reward_pb2.ScoreRequest:
    """``{"prompt": text or messages, "response": text, "label": any}``."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("body: expected a JSON object with prompt, response and label")
    if "response" not in body:
        raise InvalidArgument("response: missing (the completion to score)")
    sample = reward_pb2.Sample(completion=_text("response", body["response"]))
    _set_prompt(sample, body.get("prompt"), "prompt", profile)
    _set_field(sample, profile.label_field, body.get("label"), "label")
    return _request(profile, [sample])


def slime_answer(profile: Profile, response: reward_pb2.ScoreResponse, failure: Failure | None) -> Any:
    """The total (:func:`nansum`) as a bare number, or (``slime_reward_key`` set) every reward's score (null where
    it does not apply), the total under that key and ``failed``. The bare form of a failed sample is never built:
    the caller answers an error instead."""
    total = nansum(response.total[0])
    if profile.slime_reward_key is None:
        return total
    out: dict[str, Any] = {r.name: r.scores[0] if math.isfinite(r.scores[0]) else None for r in response.results}
    out[profile.slime_reward_key] = profile.failure_value if failure else total
    out["failed"] = failure is not None
    if failure:
        out["failure"] = failure.reason
    return out


# -- NeMo Gym -------------------------------------------------------------------------------------------------------

GYM_KEYS = ("responses_create_params", "response")


def gym_completion(response: Any) -> str:
    """The Responses-API output's text: every ``output_text`` part of every ``message`` item (``output_text``).

    Example:
        >>> gym_completion({"output": [{"type": "reasoning", "summary": []}, {"type": "message", "role": "assistant",
        ...     "content": [{"type": "output_text", "text": "<answer>4</answer>", "annotations": []}]}]})
        '<answer>4</answer>'
    """
    if not isinstance(response, Mapping) or not isinstance(response.get("output"), list):
        raise InvalidArgument("response.output: expected the Responses API output list")
    parts = []
    for i, item in enumerate(response["output"]):
        if not isinstance(item, Mapping) or item.get("type", "message") != "message":
            continue
        content = item.get("content")
        if not isinstance(content, list):
            raise InvalidArgument(f"response.output[{i}].content: expected a list of content parts")
        for j, part in enumerate(content):
            if isinstance(part, Mapping) and part.get("type") == "output_text":
                parts.append(_text(f"response.output[{i}].content[{j}].text", part.get("text")))
    return "".join(parts)


def gym_request(profile: Profile, body: Any) -> reward_pb2.ScoreRequest:
    """A ``/verify`` body: the completion from ``response``, the prompt from ``responses_create_params.input``, and
    every other key of the row as a field (the profile's ``label_field`` among them)."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("body: expected a JSON object with responses_create_params and response")
    params = body.get("responses_create_params")
    if not isinstance(params, Mapping):
        raise InvalidArgument("responses_create_params: expected an object with input")
    sample = reward_pb2.Sample(completion=gym_completion(body.get("response")))
    prompt = params.get("input")
    if isinstance(prompt, list):  # Responses input items: messages (role + content); tool items carry no prompt
        prompt = [item for item in prompt if isinstance(item, Mapping) and "role" in item]
    _set_prompt(sample, prompt, "responses_create_params.input", profile)
    for key, value in body.items():
        if key not in GYM_KEYS:
            _set_field(sample, key, value, key)
    if profile.gym_label_key is not None and profile.gym_label_key != profile.label_field:
        if profile.gym_label_key not in body:
            raise InvalidArgument(f"{profile.gym_label_key}: missing (the profile's gym_label_key names the label)")
        _set_field(sample, profile.label_field, body[profile.gym_label_key], profile.gym_label_key)
    return _request(profile, [sample])


def gym_answer(
    profile: Profile, body: Mapping[str, Any], response: reward_pb2.ScoreResponse, failure: Failure | None
) -> dict[str, Any]:
    """The body echoed with ``reward`` (the weighted total, :func:`nansum`), ``reward_components`` (weight × score
    per reward, 0.0 where a reward does not apply, so they sum to ``reward``) and ``mask_sample``.

    A failed sample: ``reward`` is ``failure_value``, ``reward_failed`` is true and ``reward_failure`` says why;
    under ``on_failure: mask`` (the default) also ``mask_sample: true``, so Gym and NeMo RL drop it; under
    ``marker`` it is trained on, flagged. Its components are still the rewards that scored. The mask is set where
    both generations read it: ``BaseVerifyResponse.mask_sample`` (with ``failure_kind`` and ``failure_reason``) at
    the top level (nemo-gym 0.7), and ``instance_config.mask_sample`` (Gym at 07d6b0d, NeMo RL's mask gate).
    """
    components = {r.name: nansum(r.weight * r.scores[0]) for r in response.results}
    out = dict(body)
    out["reward"] = profile.failure_value if failure else nansum(response.total[0])
    out["reward_components"] = components
    out["reward_failed"] = failure is not None
    masked = failure is not None and profile.on_failure == "mask"
    instance = dict(out.get("instance_config") or {})
    instance["mask_sample"] = masked
    out["instance_config"] = instance
    out["mask_sample"] = masked
    if failure is not None:
        out["reward_failure"] = failure.reason
        # Gym's vocabulary allows "<server>:<kind>" for kinds its shared set does not name.
        out["failure_kind"] = f"reward_service:{failure.kind.label}"
        out["failure_reason"] = failure.reason
    return out
