"""``lora-eval``: n completions per prompt for each model of an OpenAI-compatible endpoint, scored by the reward
service, summarized per model × reward.

With ``--config RECIPE`` the prompts, prompt format, rewards, weights and params are the training recipe's (through
``trainer_client``'s loaders, so evaluation sees exactly what training saw). With ``--dataset FILE`` they come
from a JSONL/JSON/CSV file (see :func:`dataset_examples`) and ``--rewards``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.generate import ChatEndpoint, GenerationError, SamplingSettings
from inference.report import markdown_table, summarize, write_report
from trainer_client.client import RewardClient
from trainer_client.convert import nan_to_none
from trainer_client.data import READERS, load_examples
from trainer_client.errors import InputError, PreflightError, RecipeError, RewardServiceError
from trainer_client.preflight import check_reward, check_service
from trainer_client.recipes import load_recipe

PROG = "lora-eval"


class EvalError(Exception):
    """Bad input or an unusable service; the message says which."""


@dataclass
class EvalTask:
    """What to evaluate: prompt examples, reward specs, and where the reward service is."""

    examples: list[dict[str, Any]]
    rewards: list[dict[str, Any]]
    reward_target: str
    #: Sampling defaults taken from the recipe's ``training`` section (GRPOConfig names).
    defaults: dict[str, Any]
    #: The recipe's ``prompt.chat_template``, sent to vLLM as its ``chat_template`` request field.
    chat_template: str | None = None


def parse_rewards(text: str) -> list[dict[str, Any]]:
    """``--rewards``: ``name[:weight],...``, or a JSON list of ``{"name", "weight", "params"}``.

    Example:
        >>> for spec in parse_rewards("xml_correctness:2,xml_strict_format"):
        ...     print(spec)
        {'name': 'xml_correctness', 'weight': 2.0, 'params': {}}
        {'name': 'xml_strict_format', 'weight': 1.0, 'params': {}}
        >>> parse_rewards('[{"name": "boxed_accuracy", "params": {"reference_field": "solution"}}]')[0]["params"]
        {'reference_field': 'solution'}
    """
    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvalError(f"--rewards: not valid JSON ({exc.msg})") from exc
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("name") for i in items):
            raise EvalError('--rewards: expected a JSON list of {"name": ..., "weight": ..., "params": {...}}')
        return [
            {"name": i["name"], "weight": float(i.get("weight", 1.0)), "params": i.get("params") or {}} for i in items
        ]
    specs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition(":")
        try:
            specs.append({"name": name.strip(), "weight": float(weight) if weight else 1.0, "params": {}})
        except ValueError:
            raise EvalError(f"--rewards {part!r}: weight {weight!r} is not a number") from None
    if not specs:
        raise EvalError("--rewards: name at least one reward")
    return specs


def _prompt_messages(value: Any, system: str, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        head = [{"role": "system", "content": system}] if system else []
        return [*head, {"role": "user", "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise EvalError(f"{where}: 'prompt' must be a string or a list of {{role, content}} messages")


def dataset_examples(path: str | Path, *, system: str = "", max_samples: int | None = None) -> list[dict[str, Any]]:
    """Examples from a local file without a recipe.

    Each row needs ``prompt`` (a string, sent as the user turn after ``system``, or a list of chat messages) or,
    failing that, ``question``; every other column (``answer``, ``solution``, ...) becomes a field the rewards
    read. Rows are read by ``trainer_client``'s readers (``.jsonl``, ``.json``, ``.csv``).
    """
    file = Path(path)
    reader = READERS.get(file.suffix.lower())
    if reader is None:
        raise EvalError(f"--dataset {path}: expected a {', '.join(READERS)} file")
    if not file.is_file():
        raise EvalError(f"--dataset {path}: no such file")
    examples = []
    try:
        for number, row in enumerate(reader(file), 1):
            if max_samples is not None and len(examples) >= max_samples:
                break
            key = "prompt" if "prompt" in row else "question" if "question" in row else None
            if key is None:
                raise EvalError(f"{path} row {number}: no 'prompt' (or 'question') column; it has {sorted(row)}")
            fields = {k: v for k, v in row.items() if k != "prompt"}
            examples.append({**fields, "prompt": _prompt_messages(row[key], system, f"{path} row {number}")})
    except InputError as exc:
        raise EvalError(str(exc)) from exc
    if not examples:
        raise EvalError(f"--dataset {path}: no rows")
    return examples


def load_task(args: argparse.Namespace) -> EvalTask:
    """The examples and rewards, from the recipe (``--config``) or the file and ``--rewards`` (``--dataset``)."""
    if args.dataset:
        if not args.rewards:
            raise EvalError("--dataset needs --rewards (e.g. --rewards xml_correctness:2,xml_strict_format)")
        examples = dataset_examples(args.dataset, system=args.system, max_samples=args.max_samples)
        return EvalTask(examples, parse_rewards(args.rewards), args.reward_server or "127.0.0.1:50051", {})
    try:
        recipe = load_recipe(args.config, args.set)
        examples = load_examples(recipe, split=args.split, max_samples=args.max_samples)
    except (RecipeError, InputError) as exc:
        raise EvalError(str(exc)) from exc
    rewards = parse_rewards(args.rewards) if args.rewards else recipe.reward_specs()
    target = args.reward_server or recipe.reward_server.target
    return EvalTask(examples, rewards, target, dict(recipe.training), recipe.prompt.chat_template)


def check_rewards(client: RewardClient, rewards: Sequence[Mapping[str, Any]], example: Mapping[str, Any]) -> None:
    """Before generating anything: the service is up, every reward exists with valid params, its fields exist."""
    try:
        catalogue = check_service(client)
        for spec in rewards:
            info = check_reward(spec["name"], spec["params"], catalogue)
            if info.reads_completion_ids:  # refused before generating, not after: the endpoint returns text only
                raise PreflightError(
                    f"reward {spec['name']!r} reads completion_ids (token ids), which lora-eval does not get "
                    "from the chat endpoint; score such rewards in training or with reward-score"
                )
            missing = [f for f in info.fields_read(spec["params"]) if f not in example]
            if missing:
                have = sorted(k for k in example if k != "prompt")
                raise PreflightError(f"reward {spec['name']!r} reads field {missing[0]!r}; the examples have {have}")
    except PreflightError as exc:
        raise EvalError(str(exc)) from exc


async def generate_all(
    endpoint: ChatEndpoint,
    models: Sequence[str],
    examples: Sequence[Mapping[str, Any]],
    settings: SamplingSettings,
    concurrency: int,
) -> list[dict[str, Any]]:
    """One record per completion (or per failed prompt, with ``"error"``), in model, prompt, sample order."""
    from tqdm import tqdm

    limit = asyncio.Semaphore(concurrency)
    progress = tqdm(total=len(models) * len(examples), desc="generating", unit="prompt", file=sys.stderr)

    async def one(model: str, index: int, example: Mapping[str, Any]) -> list[dict[str, Any]]:
        fields = {k: v for k, v in example.items() if k != "prompt"}
        base = {"model": model, "prompt_index": index, "prompt": example["prompt"], "fields": fields}
        async with limit:
            try:
                choices = await endpoint.chat(model, example["prompt"], settings)
            except GenerationError as exc:
                return [{**base, "error": str(exc)}]
            finally:
                progress.update(1)
        return [
            {**base, "sample_index": i, "completion": c.text, "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)
        ]

    try:
        batches = await asyncio.gather(*(one(m, i, e) for m in models for i, e in enumerate(examples)))
    finally:
        progress.close()
    return [record for batch in batches for record in batch]


async def score_all(
    client: RewardClient, records: list[dict[str, Any]], rewards: list[dict[str, Any]], batch: int
) -> None:
    """Add ``scores`` (requested reward name → score, None for NaN) and ``total`` to every generated record."""
    todo = [r for r in records if "completion" in r]
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        samples = [{"prompt": r["prompt"], "completion": r["completion"], "fields": r["fields"]} for r in chunk]
        try:
            result = await client.score_async(samples, rewards)
        except (RewardServiceError, InputError) as exc:
            raise EvalError(f"scoring samples {start}..{start + len(chunk) - 1}: {exc}") from exc
        scores = {r.requested: nan_to_none(r.scores) for r in result.rewards}
        totals = nan_to_none(result.total)
        for offset, record in enumerate(chunk):
            record["scores"] = {name: values[offset] for name, values in scores.items()}
            record["total"] = totals[offset]


def write_jsonl(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Generate with each model of an OpenAI-compatible endpoint and score with the reward service.",
    )
    parser.add_argument("--endpoint", required=True, help="OpenAI-compatible URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--reward-server", help="reward service target host:port (default: the recipe's)")
    parser.add_argument("--reward-token", help="bearer token of the reward service (default: $REWARD_SERVICE_TOKEN)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="RECIPE", help="training recipe YAML: dataset, prompt format, rewards")
    source.add_argument("--dataset", metavar="FILE", help="JSONL/JSON/CSV with a prompt (or question) column")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    parser.add_argument("--split", help="dataset split (default: the recipe's dataset.split)")
    parser.add_argument("--max-samples", type=int, help="evaluate the first N prompts")
    parser.add_argument("--rewards", help="name[:weight],... or a JSON list (required with --dataset)")
    parser.add_argument("--system", default="", help="with --dataset: system prompt before string prompts")
    parser.add_argument("--models", help="comma-separated model names (default: every model the endpoint lists)")
    parser.add_argument("--n", type=int, help="completions per prompt (default: recipe num_generations, else 4)")
    parser.add_argument("--max-tokens", type=int, help="default: recipe max_completion_length, else 256")
    parser.add_argument("--temperature", type=float, help="default: recipe temperature, else 1.0")
    parser.add_argument("--top-p", type=float, help="default: recipe top_p, else 1.0")
    parser.add_argument("--seed", type=int, help="sampling seed (per request: seed + completion index)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--retries", type=int, default=3, help="retries per request (default 3)")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="default: $OPENAI_API_KEY")
    parser.add_argument("--score-batch", type=int, default=256, help="samples per Score call (default 256)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    return parser


def sampling_settings(args: argparse.Namespace, task: EvalTask) -> SamplingSettings:
    """Command line first, then the recipe's GRPOConfig values, then defaults."""

    def pick(flag: Any, key: str, default: Any) -> Any:
        return flag if flag is not None else task.defaults.get(key, default)

    extra = {"chat_template": task.chat_template} if task.chat_template else {}
    return SamplingSettings(
        n=int(pick(args.n, "num_generations", 4)),
        max_tokens=int(pick(args.max_tokens, "max_completion_length", 256)),
        temperature=float(pick(args.temperature, "temperature", 1.0)),
        top_p=float(pick(args.top_p, "top_p", 1.0)),
        seed=args.seed,
        extra=extra,
    )


async def run(args: argparse.Namespace) -> int:
    task = load_task(args)
    settings = sampling_settings(args, task)
    if settings.n < 1 or args.concurrency < 1 or args.score_batch < 1:
        raise EvalError("--n, --concurrency and --score-batch must be at least 1")
    client = RewardClient(
        task.reward_target, deadline_s=300.0, token=args.reward_token or os.environ.get("REWARD_SERVICE_TOKEN")
    )
    endpoint = ChatEndpoint(args.endpoint, api_key=args.api_key, retries=args.retries)
    try:
        check_rewards(client, task.rewards, task.examples[0])
        try:
            served = await endpoint.models()
        except GenerationError as exc:
            raise EvalError(f"cannot list the models of {endpoint.base}: {exc}") from exc
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else served
        unknown = [m for m in models if m not in served]
        if unknown or not models:
            raise EvalError(f"{endpoint.base} does not serve {unknown or 'any model'}; it serves {served}")
        print(f"{PROG}: {len(task.examples)} prompts x {settings.n} completions x {len(models)} models", flush=True)
        records = await generate_all(endpoint, models, task.examples, settings, args.concurrency)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        # Written before scoring too, so the completions survive a reward service failure.
        write_jsonl(records, out / "completions.jsonl")
        await score_all(client, records, task.rewards, args.score_batch)
    finally:
        await endpoint.aclose()
        await client.aclose()
        client.close()
    write_jsonl(records, out / "completions.jsonl")
    weights = {r["name"]: r["weight"] for r in task.rewards}
    summary = summarize(records, [r["name"] for r in task.rewards], weights)
    paths = write_report(summary, out)
    print(markdown_table(summary))
    print(f"{PROG}: wrote {out / 'completions.jsonl'}, {paths['markdown']}, {paths['json']}, {paths['png']}")
    failed = [r for r in records if "error" in r]
    for record in failed[:5]:
        print(f"{PROG}: {record['model']} prompt {record['prompt_index']} failed: {record['error']}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except EvalError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
