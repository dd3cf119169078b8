"""Loading a sequence classifier (Hugging Face id or local directory) and running it on batches.

One path for every model the server runs (the sentiment classifier and any reward model): the
tokenizer threads turn texts into token ids and then into padded tensors (pinned on a GPU, so the
copy to the device does not block), and the model thread only copies, runs the forward pass and
reads the logits back, once per batch.

torch and transformers are imported inside the functions: a server that enables no model-backed
reward, and the scoring worker processes, never pay for (or need) them.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reward_server.models.settings import ModelLoadError

#: Per text: the tokenizer's model inputs (input_ids, attention_mask, ...) as int64 numpy arrays.
Encoding = dict[str, Any]
#: Per text: the model's logits, one per label, in label id order.
Logits = tuple[float, ...]
#: How a text is cut to fit: (most tokens, "right" or "left": the side whose tokens are dropped).
Truncation = tuple[int, str]


def looks_local(model_id: str) -> bool:
    """True when ``model_id`` is meant as a directory rather than a hub id.

    Example:
        >>> looks_local("oliverguhr/german-sentiment-bert"), looks_local("./models/sentiment")
        (False, True)
    """
    return model_id.startswith(("/", ".", "~")) or os.path.isdir(model_id)


def resolve_device(requested: str) -> str:
    """``auto`` (or empty) → the first GPU if torch sees one, else ``cpu``; ``cuda`` → ``cuda:0``."""
    import torch

    if requested in ("", "auto"):
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ModelLoadError(f"device {requested!r} is not a torch device (cpu, cuda, cuda:N): {exc}") from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.index or 0
        if index >= count:
            raise ModelLoadError(f"device {requested!r} asked for, but torch sees {count} GPU(s)")
        return f"cuda:{index}"
    return str(device)


def probabilities(logits: Sequence[float], multi_label: bool) -> list[float]:
    """Sigmoid per label (multi-label or one-label models), else softmax, as the transformers pipeline does.

    Example:
        >>> [round(p, 4) for p in probabilities([0.0, math.log(3)], multi_label=False)]
        [0.25, 0.75]
        >>> probabilities([0.0], multi_label=True)
        [0.5]
    """
    if multi_label:
        return [1 / (1 + math.exp(-x)) for x in logits]
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


@dataclass
class Classifier:
    """A loaded sequence classifier and what batching needs to know about it."""

    model_id: str
    device: str
    model: Any
    tokenizer: Any
    #: Label names in id order (the model's own ``id2label``).
    labels: tuple[str, ...]
    #: Texts are truncated to this many tokens by default (the model's limit, 512 for BERT).
    max_length: int
    #: Sigmoid per label for multi-label or one-label models, softmax otherwise (as the pipeline does).
    multi_label: bool = False
    #: The tokenizer's special tokens around each text (the pipeline's way); reward models, like TRL, add none.
    add_special_tokens: bool = True
    #: The precision the model runs in (float32, float16, bfloat16) and its revision or content hash.
    dtype: str = "float32"
    revision: str = ""

    @property
    def default_truncation(self) -> Truncation:
        return (self.max_length, "right")

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode(self, texts: Sequence[str], truncation: Truncation | None = None) -> list[Encoding]:
        """Token ids of each text, truncated, unpadded (padding is per pass). Runs in a tokenizer thread."""
        import numpy as np

        limit, side = truncation or self.default_truncation
        if self.add_special_tokens:
            # The tokenizer truncates (keeping its special tokens); one fixed limit, so threads never race
            # on the fast tokenizer's truncation state.
            if (limit, side) != self.default_truncation:
                raise ValueError(f"model {self.model_id} truncates at {self.max_length} tokens on the right only")
            batch = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        else:
            # No special tokens: cutting the ids is the tokenizer's own truncation, for any limit and side.
            batch = self.tokenizer(list(texts), add_special_tokens=False)
        names = [n for n in self.tokenizer.model_input_names if n in batch]
        cut = slice(None) if self.add_special_tokens else slice(-limit, None) if side == "left" else slice(limit)
        # Arrays now (in a tokenizer thread) make padding a few vector copies.
        return [{n: np.asarray(batch[n][i][cut], dtype=np.int64) for n in names} for i in range(len(texts))]

    def collate(self, encodings: Sequence[Encoding], passes: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
        """One dict of (texts × longest) tensors per pass, padded on the right, pinned when the model is on a GPU.

        Runs in a tokenizer thread, so the model thread does no per-batch Python work beyond the forward pass.
        """
        import torch

        pin = self.device.startswith("cuda")
        pad_id = self.tokenizer.pad_token_id or 0
        prepared = []
        for indices in passes:
            rows = [encodings[i] for i in indices]
            tensors = {
                name: torch.from_numpy(pad_rows([e[name] for e in rows], pad_id if name == "input_ids" else 0))
                for name in rows[0]
            }
            prepared.append({k: v.pin_memory() for k, v in tensors.items()} if pin else tensors)
        return prepared

    def forward(self, prepared: Sequence[dict[str, Any]]) -> tuple[list[list[Logits]], float]:
        """Logits of every pass and the seconds the passes took. Runs in the model thread."""
        import torch

        start = time.perf_counter()
        with torch.inference_mode():
            outputs = [self._run_pass(inputs) for inputs in prepared]
            if self.device.startswith("cuda"):
                torch.cuda.current_stream(torch.device(self.device)).synchronize()  # one wait per batch
        # A pass split after an out-of-memory error comes back as several tensors, in row order.
        per_pass = [[tuple(row) for part in parts for row in part.tolist()] for parts in outputs]
        return per_pass, time.perf_counter() - start

    def predict(self, encodings: Sequence[Encoding], passes: Sequence[Sequence[int]]) -> list[Logits]:
        """Logits of every encoding, one forward pass per index list of ``passes`` (warm-up and tests)."""
        per_pass, _ = self.forward(self.collate(encodings, passes))
        out: list[Logits] = [()] * len(encodings)
        for indices, rows in zip(passes, per_pass, strict=True):
            for i, row in zip(indices, rows, strict=True):
                out[i] = row
        return out

    def _run_pass(self, inputs: dict[str, Any]) -> list[Any]:
        """The pass's logits (float32, on the CPU: a list of tensors, one per sub-pass run)."""
        import torch

        try:
            on_device = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
            logits = self.model(**on_device).logits.float()
        except torch.OutOfMemoryError as exc:
            rows = len(inputs["input_ids"])
            if rows == 1:
                raise PassOutOfMemory(int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else 0) from exc
            # A pass too big for the device's free memory: halve it (each half cut to its own width) and retry.
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = rows // 2
            return self._run_pass(_rows(inputs, 0, half)) + self._run_pass(_rows(inputs, half, rows))
        if self.device.startswith("cuda"):
            host = torch.empty(logits.shape, dtype=logits.dtype, pin_memory=True)
            return [host.copy_(logits, non_blocking=True)]
        return [logits]


class PassOutOfMemory(RuntimeError):
    """One text alone did not fit in the device's memory; the batching worker fails its batch with it."""

    def __init__(self, tokens: int) -> None:
        super().__init__(f"out of device memory on a single text of {tokens} tokens")
        self.tokens = tokens


def _rows(inputs: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Rows ``start:stop`` of a padded pass, cut to the longest of them (right padding)."""
    mask = inputs.get("attention_mask")
    width = int(mask[start:stop].sum(dim=1).max()) if mask is not None else inputs["input_ids"].shape[1]
    return {k: v[start:stop, :width] for k, v in inputs.items()}


def pad_rows(rows: Sequence[Any], fill: int, left: bool = False) -> Any:
    """Stack 1-d int arrays into one (rows × longest) int64 array, padded with ``fill``.

    Example:
        >>> import numpy as np
        >>> rows = [np.array([1, 2, 3]), np.array([4])]
        >>> pad_rows(rows, 0).tolist(), pad_rows(rows, 9, left=True).tolist()
        ([[1, 2, 3], [4, 0, 0]], [[1, 2, 3], [9, 9, 4]])
    """
    import numpy as np

    lengths = np.array([len(row) for row in rows])
    width = int(lengths.max())
    columns = np.arange(width)
    filled = columns >= (width - lengths)[:, None] if left else columns < lengths[:, None]
    array = np.full((len(rows), width), fill, dtype=np.int64)
    array[filled] = np.concatenate(rows)  # the mask is walked row by row, in the order of the rows
    return array


def directory_hash(path: Path) -> str:
    """A content hash of every file under ``path`` (names and bytes): a local model's revision.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "config.json").write_text("{}")
        ...     len(directory_hash(Path(tmp)))
        16
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.relative_to(path).parts):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def load_classifier(
    model_id: str,
    device: str,
    *,
    revision: str = "",
    dtype: str = "auto",
    max_length: int = 0,
    add_special_tokens: bool = True,
) -> Classifier:
    """Load ``model_id`` (hub id or local directory) for inference on ``device``.

    ``dtype`` auto is float32 on a CPU and, on a GPU, the checkpoint's half precision (fp16 when it
    was saved in float32). As TRL's GRPOTrainer does, a tokenizer without a pad token pads with its
    EOS token, and the model is told which token that is (decoders score the last non-pad token).
    Raises :class:`ModelLoadError` with the reason; the caller adds which reward wanted it.
    """
    local = looks_local(model_id)
    if local and not Path(model_id).expanduser().is_dir():
        raise ModelLoadError(f"no such directory: {model_id}")
    if local and revision:
        raise ModelLoadError(f"revision {revision!r} is for hub models, but {model_id} is a local directory")
    try:
        import torch  # noqa: F401 - fails early, naming the extra, when the models extra is missing
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelLoadError(f"{exc}; install the models extra: pip install 'grpo-rewards[models]'") from exc
    path = str(Path(model_id).expanduser()) if local else model_id
    hf_logging.disable_progress_bar()  # progress bars are noise in a server log
    hub = {"revision": revision} if revision else {}
    try:
        config = AutoConfig.from_pretrained(path, **hub)
        torch_dtype = _torch_dtype(dtype, device, config)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=torch_dtype, output_loading_info=True, **hub
        )
        tokenizer = AutoTokenizer.from_pretrained(path, **hub)
    except Exception as exc:  # transformers raises many types; the message is what matters
        raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
    config = model.config
    prefix = f"{model.base_model_prefix}."
    head = [k for k in info.get("missing_keys", ()) if not k.startswith(prefix)]
    if head:
        kinds = ", ".join(config.architectures or ["unknown"])
        raise ModelLoadError(
            f"not a sequence classifier: the checkpoint ({kinds}) has no trained classification head "
            f"(missing {', '.join(sorted(head)[:3])})"
        )
    if config.num_labels < 1:
        raise ModelLoadError(f"the model has no labels (num_labels={config.num_labels}); a classifier needs one")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("the tokenizer has neither a pad token nor an EOS token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    config.get_text_config().pad_token_id = tokenizer.pad_token_id
    model = model.to(device).eval()
    labels = tuple(str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels))
    positions = getattr(config.get_text_config(), "max_position_embeddings", None)
    limits = [tokenizer.model_max_length, positions]
    own_limit = min((int(n) for n in limits if n and n < 1_000_000), default=512)
    if max_length:
        if positions and max_length > positions:
            raise ModelLoadError(f"max_length {max_length} is over the model's {positions} positions")
        own_limit = max_length
    if not add_special_tokens:
        tokenizer.model_max_length = 1 << 62  # ids are cut by the worker; spares transformers' length warning
    multi_label = config.problem_type == "multi_label_classification" or config.num_labels == 1
    rev = revision or getattr(config, "_commit_hash", None) or (directory_hash(Path(path)) if local else "")
    return Classifier(
        model_id,
        device,
        model,
        tokenizer,
        labels,
        own_limit,
        multi_label,
        add_special_tokens,
        str(torch_dtype).removeprefix("torch."),
        rev,
    )


def _torch_dtype(requested: str, device: str, config: Any) -> Any:
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if not device.startswith("cuda"):
        return torch.float32
    saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    saved = str(saved).removeprefix("torch.")
    return getattr(torch, saved) if saved in ("float16", "bfloat16") else torch.float16
