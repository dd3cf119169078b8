"""TF-IDF cosine similarity between each completion and its own reference (seed 001)."""

from __future__ import annotations

import warnings
from collections import defaultdict

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from reward_server.registry import batch_reward
from reward_server.stopwords import stop_words


def _group_scores(reference: str, completions: list[str], words: tuple[str, ...]) -> list[float]:
    vectorizer = TfidfVectorizer(stop_words=list(words) or None)
    try:
        with warnings.catch_warnings():
            # NLTK lists hold apostrophe forms the default tokenizer splits; harmless.
            warnings.simplefilter("ignore", UserWarning)
            matrix = vectorizer.fit_transform([reference, *completions])
    except ValueError:  # empty vocabulary: nothing but stop words (or nothing at all)
        return [0.0] * len(completions)
    return [float(s) for s in cosine_similarity(matrix[0:1], matrix[1:])[0]]


@batch_reward("tfidf_similarity", alias="tfidf_similarity_reward_func", reference_field="answer")
def tfidf_similarity(completions: list[str], references: list[str], *, language: str = "german") -> list[float]:
    """Cosine similarity of TF-IDF vectors fitted per reference on [reference] + that reference's completions.

    Samples are grouped by reference text, so a batch holding several prompts scores each
    completion against its own reference with a vectorizer fitted on its own group.

    Args:
        reference_field: sample field holding the reference answer.
        language: NLTK stop word list to drop ("german", "english", ..., or "none").

    Example:
        >>> scores = tfidf_similarity(["Der Strand ist schön", "Berge im Winter"], ["Der Strand ist schön"] * 2)
        >>> [round(s, 6) for s in scores]
        [1.0, 0.0]
    """
    words = stop_words(language)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, reference in enumerate(references):
        groups[reference].append(i)
    scores = [0.0] * len(completions)
    for reference, indices in groups.items():
        for i, score in zip(indices, _group_scores(reference, [completions[i] for i in indices], words), strict=True):
            scores[i] = score
    return scores
