"""TF-IDF cosine similarity between each completion and its own reference (seed 001).

The scores are those of scikit-learn's ``TfidfVectorizer(stop_words=...)`` (its defaults:
lowercase, token pattern ``(?u)\\b\\w\\w+\\b``, smooth idf, l2 norm) fitted per reference group,
followed by ``cosine_similarity``; they agree with scikit-learn to float rounding (~1e-15), as
``tests/test_rewards_tfidf.py`` and ``tests/test_tfidf_fast.py`` check. Fitting a vectorizer per
group rebuilds a vocabulary and two sparse matrices each time; here the whole batch is tokenized
in one pass and the idf, norms and dot products of every group are computed at once with numpy,
several times cheaper.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain

import numpy as np

from reward_server.declare import batch_reward
from reward_server.stopwords import stop_words

#: scikit-learn's default token pattern; :func:`term_counts` relies on exactly this pattern.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_TOKEN = re.compile(TOKEN_PATTERN)
# Characters that split texts joined into one string: not word characters, not whitespace to
# str.split(), and neither cased nor case-ignorable, so lower() of the joined string equals the
# joined lower() of the texts (only Greek final sigma looks at neighbours, and stops at these).
_SEPARATORS = "".join(map(chr, (*range(0x00, 0x09), *range(0x0E, 0x1C))))


@lru_cache(maxsize=32)
def stop_set(language: str) -> set[str]:
    """The stop words ``TfidfVectorizer(stop_words=NLTK list)`` drops; fails early on an unknown language.

    scikit-learn drops exactly the listed words (it keeps ``frozenset(list)``), so no vectorizer is needed.

    Example:
        >>> "und" in stop_set("german"), stop_set("none")
        (True, set())
    """
    return set(stop_words(language))


def term_counts(texts: Sequence[str], language: str = "german") -> list[Counter[str]]:
    """Each text's term counts, as the analyzer of ``TfidfVectorizer(stop_words=...)`` yields them.

    The pattern's tokens are the maximal runs of 2+ word characters of the lowercased text. All
    texts are lowercased together, every non-word character is replaced by a space (one
    ``str.replace`` per distinct character in the batch) and the result is split on whitespace:
    a few passes in C over the batch instead of a regex scan per text.

    Example:
        >>> [sorted(c.items()) for c in term_counts(["Die Katze und die KATZE!", "x y_z"])]
        [[('katze', 2)], [('y_z', 1)]]
    """
    stops = stop_set(language)
    separator = next((s for s in _SEPARATORS if not any(s in t for t in texts)), None)
    if separator is None:  # every separator occurs in the texts: count text by text
        return [_drop(Counter(_TOKEN.findall(t.lower())), stops) for t in texts]
    joined = separator.join(texts).lower()
    try:
        codes = np.flatnonzero(np.bincount(np.frombuffer(joined.encode("latin-1"), np.uint8)))
    except UnicodeEncodeError:
        codes = np.unique(np.frombuffer(joined.encode("utf-32-le"), np.uint32))
    single_letters = []
    for char in map(chr, codes.tolist()):
        if char.isalnum() or char == "_":  # what \w matches in a str pattern
            single_letters.append(char)
        elif char not in (" ", separator):
            joined = joined.replace(char, " ")
    drop = stops.union(single_letters)  # one-character runs are no tokens
    return [_drop(Counter(text.split()), drop) for text in joined.split(separator)]


def _drop(counts: Counter[str], words: set[str]) -> Counter[str]:
    for word in counts.keys() & words:
        counts.pop(word)
    return counts


def group_similarities(groups: Sequence[tuple[Counter[str], Sequence[Counter[str]]]]) -> list[list[float]]:
    """Per group (reference counts, completion counts): each completion's tf-idf cosine to the reference.

    Within a group of n documents (the reference and its completions), idf(t) = ln((1 + n) /
    (1 + df(t))) + 1 (scikit-learn's smooth idf), a document's vector is count × idf, and the
    score is the cosine of the two vectors; a document without terms (or an empty vocabulary)
    scores 0. Every group is computed in the same few numpy operations.

    Example:
        >>> ref = Counter(a=1, b=1)
        >>> [[round(s, 6) for s in g] for g in group_similarities([(ref, [ref, Counter(c=2), Counter()])])]
        [[1.0, 0.0, 0.0]]
    """
    docs = [doc for reference, completions in groups for doc in (reference, *completions)]
    sizes = np.array([1 + len(completions) for _, completions in groups])
    # A term id per (group, term): the group's vocabulary, numbered after the previous groups'.
    ids: list[dict[str, int]] = []
    offset = 0
    for reference, completions in groups:
        vocabulary = dict.fromkeys(chain(reference, *completions))
        ids.append(dict(zip(vocabulary, range(offset, offset + len(vocabulary)), strict=True)))
        offset += len(vocabulary)
    group_of_doc = np.repeat(np.arange(len(groups)), sizes)
    lengths = np.fromiter(map(len, docs), np.int64, len(docs))
    entries = int(lengths.sum())
    term = np.fromiter(
        chain.from_iterable(map(ids[g].__getitem__, doc) for g, doc in zip(group_of_doc.tolist(), docs, strict=True)),
        np.int64,
        entries,
    )
    count = np.fromiter(chain.from_iterable(doc.values() for doc in docs), np.float64, entries)
    doc_of_entry = np.repeat(np.arange(len(docs)), lengths)
    # Documents per term id (each entry is one document holding that term) and the group size per term id.
    df = np.bincount(term, minlength=offset).astype(np.float64)
    n = np.repeat(sizes, [len(i) for i in ids]).astype(np.float64)
    idf = np.log((n + 1) / (df + 1)) + 1
    weight = count * idf[term]
    norm = np.sqrt(np.bincount(doc_of_entry, weights=weight * weight, minlength=len(docs)))
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # each group's reference document
    is_reference = np.zeros(len(docs), bool)
    is_reference[first] = True
    reference_weight = np.zeros(offset)
    on_reference = is_reference[doc_of_entry]
    reference_weight[term[on_reference]] = weight[on_reference]
    dot = np.bincount(doc_of_entry, weights=weight * reference_weight[term], minlength=len(docs))
    denominator = norm * norm[first][group_of_doc]
    scores = np.divide(dot, denominator, out=np.zeros(len(docs)), where=denominator > 0)
    return [
        scores[start + 1 : start + size].tolist() for start, size in zip(first.tolist(), sizes.tolist(), strict=True)
    ]


@batch_reward(
    "tfidf_similarity", alias="tfidf_similarity_reward_func", grouped_by="reference_field", reference_field="answer"
)
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
    stop_set(language)  # an unknown language fails here, before any work
    if not completions:
        return []
    groups: dict[str, list[int]] = defaultdict(list)
    for i, reference in enumerate(references):
        groups[reference].append(i)
    counts = term_counts([*groups, *completions], language)
    reference_counts, completion_counts = counts[: len(groups)], counts[len(groups) :]
    similarities = group_similarities(
        [
            (ref, [completion_counts[i] for i in indices])
            for ref, indices in zip(reference_counts, groups.values(), strict=True)
        ]
    )
    scores = [0.0] * len(completions)
    for indices, group in zip(groups.values(), similarities, strict=True):
        for i, score in zip(indices, group, strict=True):
            scores[i] = score
    return scores
