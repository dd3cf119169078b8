"""Tiny causal LMs for tests: random weights from a Qwen2 config and a byte-level BPE tokenizer trained on a
few lines, with a ChatML chat template. Nothing is downloaded; everything is saved to a local directory that
``from_pretrained`` (transformers, TRL, vLLM) loads like a hub model.

    from tiny_models import build_tiny_causal_lm  # tests/ is on sys.path under pytest (rootdir conftest)
    model_dir = build_tiny_causal_lm(tmp_path / "tiny-qwen2")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: ChatML, as Qwen2 uses it (role header, content, <|im_end|>); the generation prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: Lines the tokenizer is trained on: the output formats of the seed recipes, so their tags are short tokens.
TRAINING_LINES = (
    "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>",
    "<Begründung>\nSechs mal sieben ist 42.\n</Begründung>\n<Antwort>\n42\n</Antwort>",
    "<think>\nTwo plus two is four.\n</think>\nSo the answer is \\boxed{4}.",
    "<start_working_out>6*7=42<end_working_out><SOLUTION>42</SOLUTION>",
    "What is 6 times 7? Natalia sold clips to 48 of her friends in April, and then half as many in May.",
    "Der Strand ist schön und das Wetter ist warm. Die Berge sind hoch.",
    "0 1 2 3 4 5 6 7 8 9 10 12 24 42 72 100 + - * / = #### ",
)


def build_tiny_tokenizer(directory: str | Path, lines: Sequence[str] = TRAINING_LINES, vocab_size: int = 512):
    """Train a byte-level BPE tokenizer on ``lines``, give it the ChatML template, save it; returns it.

    Every byte is in the vocabulary, so any text round-trips; ``<|im_end|>`` is EOS, ``<|endoftext|>`` is PAD.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(list(lines) * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def build_tiny_model(
    directory: str | Path,
    tokenizer,
    *,
    hidden_size: int = 256,
    num_heads: int = 4,
    num_layers: int = 2,
    seed: int = 0,
):
    """A Qwen2 causal LM with random weights (head_dim 64, so vLLM accepts it), saved next to the tokenizer."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    model.save_pretrained(str(directory))
    return model


def build_tiny_causal_lm(directory: str | Path, **model_kwargs) -> Path:
    """Tokenizer + model saved together in ``directory`` (created); returns the directory, ready for
    ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` / ``vllm serve``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(directory)
    build_tiny_model(directory, tokenizer, **model_kwargs)
    return directory


#: A tiny GSM8K-style dataset: question + "#### answer" solutions (the GSM8K loader keeps the part after ####).
TINY_GSM8K = (
    ("What is 6 times 7?", "6 * 7 = 42\n#### 42"),
    ("What is 2 plus 2?", "2 + 2 = 4\n#### 4"),
    ("Natalia sold 48 clips in April and half as many in May. How many in May?", "48 / 2 = 24\n#### 24"),
    ("What is 10 plus 2?", "10 + 2 = 12\n#### 12"),
    ("What is 100 minus 28?", "100 - 28 = 72\n#### 72"),
    ("What is 3 times 3?", "3 * 3 = 9\n#### 9"),
)


def write_tiny_dataset(path: str | Path, rows: Sequence[tuple[str, str]] = TINY_GSM8K) -> Path:
    """Write ``rows`` as JSONL with ``question``/``answer``, plus ``solution`` (the worked text), ``problem``, and
    open-r1's code columns ``problem_statement`` and ``verification_info`` (one stdin test printing the answer)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for question, answer in rows:
            record = {"question": question, "answer": answer, "problem": question, "solution": answer}
            tests = [{"type": "stdin_stdout", "input": "", "output": answer.split("####")[-1].strip()}]
            record |= {"problem_statement": question, "verification_info": {"language": "python", "test_cases": tests}}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
