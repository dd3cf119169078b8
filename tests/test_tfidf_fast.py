"""The fast tf-idf (one tokenizing pass, numpy per group) against scikit-learn itself.

Expected values come from ``TfidfVectorizer(stop_words=NLTK list).fit_transform`` per reference
group and ``cosine_similarity``, exactly as the README specifies; the implementation must agree
to float rounding on any text, including the unicode corners of lowercasing and ``\\w``.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from reward_server.rewards.tfidf import _SEPARATORS, TOKEN_PATTERN, term_counts, tfidf_similarity
from reward_server.stopwords import stop_words

TOLERANCE = 1e-9


def sklearn_scores(completions: list[str], references: list[str], language: str) -> list[float]:
    """The specification, computed with scikit-learn: one vectorizer per reference group; empty vocabulary → 0."""
    words = list(stop_words(language)) or None
    out = [0.0] * len(completions)
    for reference in dict.fromkeys(references):
        indices = [i for i, r in enumerate(references) if r == reference]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                group = [reference, *(completions[i] for i in indices)]
                matrix = TfidfVectorizer(stop_words=words).fit_transform(group)
            except ValueError:  # empty vocabulary
                continue
        for i, score in zip(indices, cosine_similarity(matrix[0:1], matrix[1:])[0], strict=True):
            out[i] = float(score)
    return out


def sklearn_counts(text: str, language: str) -> dict[str, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        analyze = TfidfVectorizer(stop_words=list(stop_words(language)) or None).build_analyzer()
    counts: dict[str, int] = {}
    for token in analyze(text):
        counts[token] = counts.get(token, 0) + 1
    return counts


# Letters, digits, other numerics, combining marks, case oddities (final sigma, dotted I, ß), CJK,
# punctuation, whitespace of every kind, separators the fast path joins with, and German stop words.
ALPHABET = (
    "aAbBzZ_ 019²½٣ΣσςİıßẞéÉ\u0301日本語\n\t\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u3000.,;:!?'\"-<>/\\{}()\x00\x01\x1b😀"
)
WORDS = ["und", "der", "Die", "Katze", "Hund", "schön", "Straße", "ΟΔΟΣ", "x", "ab", "_a"]
text = st.lists(st.one_of(st.text(alphabet=ALPHABET, max_size=12), st.sampled_from(WORDS)), max_size=12).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(text, min_size=1, max_size=6), language=st.sampled_from(["german", "english", "none"]))
def test_term_counts_equal_the_vectorizer_analyzer(texts, language):
    fast = term_counts(texts, language)
    assert [dict(c) for c in fast] == [sklearn_counts(t, language) for t in texts]


@settings(max_examples=200, deadline=None)
@given(
    references=st.lists(text, min_size=1, max_size=3),
    picks=st.lists(st.tuples(st.integers(0, 2), text), min_size=1, max_size=10),
    language=st.sampled_from(["german", "none"]),
)
def test_scores_equal_scikit_learn_per_group(references, picks, language):
    completions = [c for _, c in picks]
    refs = [references[i % len(references)] for i, _ in picks]
    expected = sklearn_scores(completions, refs, language)
    assert tfidf_similarity(completions, refs, language=language) == pytest.approx(expected, abs=TOLERANCE)


def test_seed_workload_equals_scikit_learn():
    from bench.workload import make_batch

    batch = make_batch(prompts=6, per_prompt=8, size=1750)
    expected = sklearn_scores(batch.completions, batch.answers, "german")
    scores = tfidf_similarity(batch.completions, batch.answers)
    assert max(abs(a - b) for a, b in zip(scores, expected, strict=True)) < TOLERANCE
    assert min(scores) > 0.0  # sanity: the workload's completions share words with their references


def test_texts_holding_every_separator_take_the_per_text_path():
    completions = [_SEPARATORS + " Katze Hund", "Hund Maus " + _SEPARATORS]
    references = ["Katze Hund Maus"] * 2
    expected = sklearn_scores(completions, references, "german")
    assert tfidf_similarity(completions, references) == pytest.approx(expected, abs=TOLERANCE)


def test_token_pattern_is_scikit_learns_default():
    # The fast tokenizer reproduces exactly this pattern; a change in scikit-learn must fail loudly.
    assert TfidfVectorizer().token_pattern == TOKEN_PATTERN


def test_empty_batch_scores_nothing():
    assert tfidf_similarity([], []) == []
