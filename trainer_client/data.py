"""Dataset loading: hub datasets (GSM8K, OpenR1-Math, ...) or local JSONL/CSV → chat-prompt examples.

A *format* gives default column names and a clean-up of the reference answer; the recipe's
``dataset.columns`` maps example columns to source columns on top of those defaults.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from trainer_client.convert import json_object
from trainer_client.errors import InputError, RecipeError
from trainer_client.recipes import DatasetSection, PromptSection, Recipe

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv")


def gsm8k_answer(text: Any) -> str:
    """The final answer of a GSM8K solution: the text after ``####`` (or the whole text if there is none).

    Example:
        >>> gsm8k_answer("She has 3 + 4 = 7 apples.\\n#### 7")
        '7'
        >>> gsm8k_answer(" 42 ")
        '42'
    """
    text = str(text)
    return text.split("####")[-1].strip()


@dataclass(frozen=True)
class DataFormat:
    """Default columns (example column → source column) and per-column clean-ups of one dataset family."""

    columns: Mapping[str, str]
    transforms: Mapping[str, Callable[[Any], Any]]


#: Dataset families by name (``dataset.format``).
FORMATS: dict[str, DataFormat] = {
    "gsm8k": DataFormat({"question": "question", "answer": "answer"}, {"answer": gsm8k_answer}),
    "openr1": DataFormat({"question": "problem", "answer": "answer", "solution": "solution"}, {}),
    "generic": DataFormat({"question": "question", "answer": "answer"}, {}),
}


def resolve_format(section: DatasetSection) -> str:
    """``dataset.format``, with ``auto`` guessed from the path.

    Example:
        >>> resolve_format(DatasetSection(path="openai/gsm8k"))
        'gsm8k'
        >>> resolve_format(DatasetSection(path="open-r1/OpenR1-Math-220k"))
        'openr1'
        >>> resolve_format(DatasetSection(path="data/tourism.jsonl"))
        'generic'
    """
    if section.format != "auto":
        return section.format
    name = section.path.lower().replace("-", "").replace("_", "")
    if "gsm8k" in name:
        return "gsm8k"
    if "openr1" in name:
        return "openr1"
    return "generic"


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            yield json_object(line, f"{path} line {number}")


def _read_json(path: Path) -> Iterator[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = data if isinstance(data, list) else data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a JSON list of objects (or {{'data': [...]}})")
    yield from rows


def _read_csv(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


READERS: dict[str, Callable[[Path], Iterator[dict[str, Any]]]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
}


def read_rows(section: DatasetSection, split: str) -> Iterator[Mapping[str, Any]]:
    """Source rows: a local file (any split) or a hub dataset's ``split`` via ``datasets.load_dataset``."""
    path = Path(section.path).expanduser()
    if path.suffix.lower() in LOCAL_SUFFIXES:
        if not path.is_file():
            raise RecipeError(f"dataset.path: local file {path} does not exist")
        return READERS[path.suffix.lower()](path)
    if path.is_dir():
        from datasets import load_from_disk  # a dataset saved with save_to_disk

        loaded = load_from_disk(str(path))
        return iter(loaded[split] if hasattr(loaded, "keys") else loaded)
    from datasets import load_dataset  # only hub datasets need it

    return iter(load_dataset(section.path, section.name, split=split))


def build_prompt(prompt: PromptSection, row: Mapping[str, Any]) -> list[dict[str, str]]:
    """Chat messages for one example: the system prompt (if any), then the user turn from ``user_template``.

    Example:
        >>> build_prompt(PromptSection(system="Answer in <answer> tags."), {"question": "2+2?"})
        [{'role': 'system', 'content': 'Answer in <answer> tags.'}, {'role': 'user', 'content': '2+2?'}]
    """
    try:
        user = prompt.user_template.format_map(row)
    except KeyError as exc:
        raise RecipeError(
            f"prompt.user_template uses {{{exc.args[0]}}}, which is not an example column; have {sorted(row)}"
        ) from None
    messages = [{"role": "system", "content": prompt.system}] if prompt.system.strip() else []
    return [*messages, {"role": "user", "content": user}]


def load_examples(recipe: Recipe, split: str | None = None, max_samples: int | None = None) -> list[dict[str, Any]]:
    """The recipe's dataset as prompt examples — what ``grpo-train`` trains on and ``lora-eval`` evaluates.

    Stable contract: each example is a dict with

    - ``"prompt"``: a list of chat messages ``[{"role": "system", ...}, {"role": "user", ...}]``; the system
      turn is ``recipe.prompt.system`` (left out when empty), the user turn is ``recipe.prompt.user_template``
      formatted with the example's columns;
    - every column of the recipe's mapping (``dataset.columns`` over the format's defaults, e.g. ``"question"``,
      ``"answer"``, ``"solution"``), named as the rewards read them, with the format's clean-up applied
      (GSM8K: the text after ``####``).

    Args:
        recipe: a loaded recipe (see :func:`trainer_client.recipes.load_recipe`).
        split: dataset split (default ``recipe.dataset.split``); local files have one split and ignore it.
        max_samples: keep the first N examples (default ``recipe.dataset.max_samples``; None: all).

    Raises:
        RecipeError: the file is missing, a mapped column is absent, or the template names an unknown column.
        InputError: a local file has a malformed line (named by its number).
    """
    section = recipe.dataset
    data_format = FORMATS[resolve_format(section)]
    columns = {k: v for k, v in {**data_format.columns, **section.columns}.items() if v is not None}
    limit = max_samples if max_samples is not None else section.max_samples
    examples = []
    for index, row in enumerate(islice(read_rows(section, split or section.split), limit)):
        missing = [source for source in columns.values() if source not in row]
        if missing:
            raise RecipeError(
                f"dataset {section.path} row {index}: no column {missing[0]!r} (mapped by dataset.columns); "
                f"the row has {sorted(row)}"
            )
        example = {name: data_format.transforms.get(name, _identity)(row[source]) for name, source in columns.items()}
        examples.append({"prompt": build_prompt(recipe.prompt, example), **example})
    if not examples:
        raise RecipeError(f"dataset {section.path} (split {split or section.split!r}) has no examples")
    return examples


def _identity(value: Any) -> Any:
    return value
