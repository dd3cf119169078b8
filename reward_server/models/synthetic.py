"""Random-weight sentiment classifiers and German-like texts, for tests and benchmarks.

No machine here reaches a model hub, so tests and ``bench/`` build a BERT classifier of the
wanted size from a config (random weights, the real model's three labels) with a WordPiece
tokenizer trained on a few generated lines, and save both to a directory that the server loads
like any local model. Nothing in the server imports this module.
"""

from __future__ import annotations

import random
from pathlib import Path

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
