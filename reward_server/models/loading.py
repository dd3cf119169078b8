"""Loading a sequence classifier (Hugging Face id or local directory) and running it on a batch.

torch and transformers are imported inside the functions: a server that enables no model-backed
reward, and the scoring worker processes, never pay for (or need) them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reward_server.models.base import ModelLoadError

#: Per text: the tokenizer's model inputs (input_ids, attention_mask, ...) as int64 numpy arrays.
Encoding = dict[str, Any]
#: Per text: one probability per label, in label id order.
Probs = tuple[float, ...]


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


@dataclass
class Classifier:
    """A loaded sequence classifier and what batching needs to know about it."""

    model_id: str
    device: str
    model: Any
    tokenizer: Any
    #: Label names in id order (the model's own ``id2label``).
    labels: tuple[str, ...]
    #: Texts are truncated to this many tokens (the model's limit, 512 for BERT).
    max_length: int
    #: Sigmoid per label for multi-label or one-label models, softmax otherwise (as the pipeline does).
    multi_label: bool = False

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        """Token ids of each text, truncated to :attr:`max_length`, unpadded (padding is per pass)."""
        import numpy as np

        batch = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        names = [n for n in self.tokenizer.model_input_names if n in batch]
        # Arrays now (in a tokenizer thread) make padding in the model thread a few vector copies.
        return [{n: np.asarray(batch[n][i], dtype=np.int64) for n in names} for i in range(len(texts))]

    def predict(self, encodings: Sequence[Encoding], passes: Sequence[Sequence[int]]) -> list[Probs]:
        """Label probabilities of every encoding, running one forward pass per index list of ``passes``."""
        import torch

        out: list[Probs] = [()] * len(encodings)
        with torch.inference_mode():
            for indices in passes:
                for i, probs in zip(indices, self._run_pass([encodings[i] for i in indices]), strict=True):
                    out[i] = probs
        return out

    def _run_pass(self, encodings: Sequence[Encoding]) -> list[Probs]:
        import torch

        try:
            inputs = {k: v.to(self.device) for k, v in self._pad(encodings).items()}
            logits = self.model(**inputs).logits.float()
        except torch.OutOfMemoryError:
            if len(encodings) == 1:
                raise
            # A pass too big for the device's free memory: halve it instead of failing the batch.
            torch.cuda.empty_cache()
            half = len(encodings) // 2
            return self._run_pass(encodings[:half]) + self._run_pass(encodings[half:])
        probs = logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)
        return [tuple(row) for row in probs.cpu().tolist()]

    def _pad(self, encodings: Sequence[Encoding]) -> dict[str, Any]:
        """One (texts × longest) tensor per model input, padded on the tokenizer's side."""
        import torch

        left = self.tokenizer.padding_side == "left"
        pad_id = self.tokenizer.pad_token_id or 0
        return {
            name: torch.from_numpy(pad_rows([e[name] for e in encodings], pad_id if name == "input_ids" else 0, left))
            for name in encodings[0]
        }


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


def load_classifier(model_id: str, device: str) -> Classifier:
    """Load ``model_id`` (hub id or local directory) for inference on ``device`` (fp16 on a GPU).

    Raises :class:`ModelLoadError` with the reason; the caller adds which reward wanted it.
    """
    if looks_local(model_id) and not Path(model_id).expanduser().is_dir():
        raise ModelLoadError(f"no such directory: {model_id}")
    try:
        import torch  # noqa: F401 - fails early, naming the extra, when the models extra is missing
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelLoadError(f"{exc}; install the models extra: pip install 'grpo-rewards[models]'") from exc
    path = str(Path(model_id).expanduser()) if looks_local(model_id) else model_id
    hf_logging.disable_progress_bar()  # progress bars are noise in a server log
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers raises many types; the message is what matters
        raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
    if device.startswith("cuda"):
        model = model.half()
    model = model.to(device).eval()
    config = model.config
    labels = tuple(str(config.id2label[i]) for i in range(config.num_labels))
    limits = [tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)]
    max_length = min((int(n) for n in limits if n and n < 1_000_000), default=512)
    multi_label = config.problem_type == "multi_label_classification" or config.num_labels == 1
    return Classifier(model_id, device, model, tokenizer, labels, max_length, multi_label)
