"""Random-weight sentiment classifiers and German-like texts, for tests and benchmarks.

No machine here reaches a model hub, so tests and ``bench/`` build a BERT classifier of the
wanted size from a config (random weights, the real model's three labels) with a WordPiece
tokenizer trained on a few generated lines, and save both to a directory that the server loads
like any local model. Nothing in the server imports this module.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

#: The labels of oliverguhr/german-sentiment-bert, in its id order.
SENTIMENT_LABELS = ("positive", "negative", "neutral")

_VOCABULARY = (
    "der die das ein eine und oder aber nicht sehr schön schrecklich toll schlecht gut warm kalt teuer billig "
    "Hotel Strand Zimmer Essen Frühstück Personal Ausblick Stadt Berge Meer See Wetter Urlaub Reise Flughafen "
    "Bahnhof Führung Museum Kirche Altstadt Restaurant Service Preis Leistung Lage Bett Dusche Balkon Pool "
    "Sauna Wanderung Radtour Ausflug Kinder Familie Freunde Abend Morgen Nacht Woche Tag Sommer Winter Herbst "
    "war ist sind waren hatten haben wurde empfehlen enttäuscht zufrieden begeistert freundlich unfreundlich "
    "laut ruhig sauber schmutzig modern alt gemütlich eng weit nah direkt leider wirklich wieder gerne nie "
    "immer oft manchmal überall jederzeit wunderbar fantastisch furchtbar ärgerlich angenehm herrlich lecker "
    "mit ohne für gegen über unter neben zwischen wegen trotz während nach vor seit bis zum zur im am vom"
)
#: German words of hotel and travel reviews, the domain of the tourism recipe.
WORDS = tuple(_VOCABULARY.split())


def german_text(rng: random.Random, words: int) -> str:
    """A German-like text of ``words`` words in sentences of 6 to 14 words.

    Example:
        >>> text = german_text(random.Random(0), 20)
        >>> len(text.split()), text.endswith(".")
        (20, True)
    """
    out: list[str] = []
    while len(out) < words:
        sentence = [rng.choice(WORDS) for _ in range(min(rng.randint(6, 14), words - len(out)))]
        sentence[0] = sentence[0].capitalize()
        sentence[-1] += rng.choice(".!.")
        out.extend(sentence)
    return " ".join(out)


def build_sentiment_classifier(
    path: str | Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 64,
    vocab_size: int = 30000,
    tokenizer_vocab: int = 400,
    initializer_range: float = 0.5,
    seed: int = 0,
) -> Path:
    """Save a random-weight BertForSequenceClassification and its WordPiece tokenizer under ``path``.

    The model accepts 512 positions like the real one. ``tokenizer_vocab`` bounds the trained
    vocabulary: a small one splits words into several pieces, as the real tokenizer does with
    rarer German words; ``vocab_size`` only sizes the embedding matrix. A large
    ``initializer_range`` spreads the random logits, so texts get different labels.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = Path(path)
    rng = random.Random(seed)
    corpus = [german_text(rng, 30) for _ in range(200)]
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=tokenizer_vocab, special_tokens=special))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=512, do_lower_case=False)

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=max(vocab_size, fast.vocab_size),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        initializer_range=initializer_range,
        num_labels=len(SENTIMENT_LABELS),
        id2label=dict(enumerate(SENTIMENT_LABELS)),
        label2id={label: i for i, label in enumerate(SENTIMENT_LABELS)},
    )
    BertForSequenceClassification(config).eval().save_pretrained(path)
    fast.save_pretrained(path)
    return path


#: ChatML, as Qwen2 uses it; the generation prompt opens the assistant turn.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: Decoder reward-model architectures :func:`build_reward_model` can build, besides "bert".
DECODERS = ("qwen2", "llama")
#: Llama-3.2-1B's shapes (1.24 B parameters with its 128k vocabulary): the ~1B decoder reward model of bench/.
LLAMA_1B = {"hidden": 2048, "layers": 16, "heads": 32, "kv_heads": 8, "intermediate": 8192, "vocab_size": 128256}
#: bert-base's shapes (110 M parameters): the BERT-size classifier of bench/.
BERT_BASE = {"hidden": 768, "layers": 12, "heads": 12, "kv_heads": 12, "intermediate": 3072, "vocab_size": 30522}


def build_reward_model(
    path: str | Path,
    kind: str = "qwen2",
    *,
    num_labels: int = 1,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vocab_size: int = 0,
    max_positions: int = 512,
    pad_token: bool = False,
    chat_template: bool = True,
    dtype: str = "float32",
    seed: int = 0,
) -> Path:
    """Save a random-weight ``*ForSequenceClassification`` reward model and its tokenizer under ``path``.

    ``kind``: qwen2 or llama (decoders, byte-level BPE tokenizer with a ChatML template and, unless
    ``pad_token``, no pad token: TRL then pads with EOS) or bert (WordPiece, pad token, no chat
    template unless asked). The tokenizer is trained on a few generated lines; ``vocab_size`` (0 =
    the tokenizer's) only sizes the embedding matrix, as a real config's would.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    rng = random.Random(seed)
    corpus = [german_text(rng, 30) for _ in range(200)] + ["What is 6 times 7? The answer is 42. <think> </think>"]
    if kind in DECODERS:
        core = Tokenizer(models.BPE())
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        trainer = trainers.BpeTrainer(
            vocab_size=600, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
        core.train_from_iterator(corpus, trainer)
        extra = {"pad_token": "<|endoftext|>"} if pad_token else {}
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", **extra)
    elif kind == "bert":
        build_sentiment_classifier(path, tokenizer_vocab=600, seed=seed)  # the WordPiece tokenizer, reused
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    else:
        raise ValueError(f"kind must be one of {', '.join(DECODERS)}, bert; got {kind!r}")
    if chat_template:
        tokenizer.chat_template = CHATML
    tokenizer.model_max_length = max_positions
    torch.manual_seed(seed)
    vocab = max(vocab_size, len(tokenizer))
    model = _classifier(kind, vocab, tokenizer, num_labels, hidden, layers, heads, kv_heads, intermediate)
    model.config.max_position_embeddings = max_positions
    model.to(getattr(torch, dtype)).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _classifier(
    kind: str, vocab: int, tokenizer: Any, num_labels: int, hidden: int, layers: int, heads: int, kv: int, inter: int
) -> Any:
    import transformers

    arch = {"bert": "Bert", "llama": "Llama", "qwen2": "Qwen2"}[kind]
    config_class = getattr(transformers, f"{arch}Config")
    model_class = getattr(transformers, f"{arch}ForSequenceClassification")

    shapes = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads}
    shapes |= {"intermediate_size": inter, "num_labels": num_labels, "max_position_embeddings": 512}
    if kind != "bert":
        shapes |= {"num_key_value_heads": kv, "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None}
        shapes |= {"pad_token_id": tokenizer.pad_token_id}
    return model_class(config_class(vocab_size=vocab, **shapes))
