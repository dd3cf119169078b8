"""Unit tests for the tf-idf similarity reward (reward_server.rewards.tfidf).

Expected values are computed here with scikit-learn directly (one vectorizer per reference
group, as the spec prescribes), never by calling the implementation.
"""

from __future__ import annotations

import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from reward_server.rewards.tfidf import tfidf_similarity

# Function words that are all on NLTK's German stop word list. The texts used with
# language="german" below contain no other stop words, so fitting with this short list
# gives the same vectors as fitting with NLTK's full list.
GERMAN_STOPS = ["und", "der", "die", "das", "ist", "ein", "eine", "auf", "im"]


def fit_group(reference: str, completions: list[str], stop_words=None) -> list[float]:
    """Cosine similarity of each completion to the reference, one vectorizer per group."""
    matrix = TfidfVectorizer(stop_words=stop_words).fit_transform([reference, *completions])
    return [float(x) for x in cosine_similarity(matrix[0], matrix[1:])[0]]


def per_group(completions, references, stop_words=None) -> list[float]:
    """Expected scores: group by reference, fit per group, scatter back in request order."""
    out = [0.0] * len(completions)
    for ref in dict.fromkeys(references):
        idx = [i for i, r in enumerate(references) if r == ref]
        for i, score in zip(idx, fit_group(ref, [completions[i] for i in idx], stop_words), strict=True):
            out[i] = score
    return out


def whole_batch(completions, references, stop_words=None) -> list[float]:
    """The WRONG way: one vectorizer fitted on the whole batch."""
    vec = TfidfVectorizer(stop_words=stop_words).fit([*dict.fromkeys(references), *completions])
    c = vec.transform(completions)
    r = vec.transform(references)
    return [float(cosine_similarity(r[i], c[i])[0, 0]) for i in range(len(completions))]


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("language", ["german", "none"])
@pytest.mark.parametrize(
    "text",
    [
        "Die Katze schläft auf dem Sofa",
        "Katze Hund Maus",
        "Größe Übung Straße",  # unicode
        "The quick brown fox jumps",
    ],
)
def test_identical_is_one(language, text):
    assert tfidf_similarity([text], [text], language=language) == [pytest.approx(1.0)]


def test_default_language_is_german():
    # Only German stop words: with the default language they are all removed.
    assert tfidf_similarity(["und der die"], ["Die Katze und der Hund"]) == [pytest.approx(0.0)]


def test_case_is_folded():
    assert tfidf_similarity(["ÜBUNG Größe"], ["übung größe"]) == [pytest.approx(1.0)]


def test_german_stop_words_only_scores_zero():
    scores = tfidf_similarity(["und der die"], ["Die Katze und der Hund"], language="german")
    assert scores == [pytest.approx(0.0)]


def test_language_none_keeps_stop_words():
    completion, reference = "und der die", "Die Katze und der Hund"
    expected = fit_group(reference, [completion], stop_words=None)
    assert expected[0] > 0.1  # sanity: shared function words do count without a stop list
    scores = tfidf_similarity([completion], [reference], language="none")
    assert scores == [pytest.approx(expected[0])]


def test_german_stop_words_are_removed_before_scoring():
    reference = "Die Katze und der Hund"
    completions = ["die Katze ist im Garten", "ein Hund und eine Maus", "das Auto"]
    expected = fit_group(reference, completions, stop_words=GERMAN_STOPS)
    with_stops = fit_group(reference, completions, stop_words=None)
    assert expected != pytest.approx(with_stops)  # sanity: the stop list matters here
    assert expected[2] == pytest.approx(0.0)
    scores = tfidf_similarity(completions, [reference] * 3, language="german")
    assert scores == pytest.approx(expected)


@pytest.mark.parametrize("language", ["german", "none"])
def test_empty_completion_scores_zero(language):
    scores = tfidf_similarity(["", "Katze"], ["Katze Hund", "Katze Hund"], language=language)
    assert scores[0] == pytest.approx(0.0)
    assert scores[1] > 0.0


@pytest.mark.parametrize(
    ("completions", "reference", "language"),
    [
        ([""], "", "german"),  # nothing at all
        ([""], "", "none"),
        (["die"], "und der", "german"),  # only stop words everywhere
        (["a b c"], "x y", "none"),  # only one-letter tokens: no vocabulary
        (["und", "der das"], "die", "german"),
    ],
)
def test_empty_vocabulary_scores_zero(completions, reference, language):
    scores = tfidf_similarity(completions, [reference] * len(completions), language=language)
    assert scores == [pytest.approx(0.0)] * len(completions)


def test_unrelated_scores_zero_and_range():
    scores = tfidf_similarity(
        ["Hund Maus", "Katze Hund Vogel", "Auto Bahn"],
        ["Katze Hund", "Katze Hund", "Katze Hund"],
        language="german",
    )
    assert len(scores) == 3
    assert all(isinstance(s, float) for s in scores)
    assert all(0.0 <= s <= 1.0 + 1e-9 for s in scores)
    assert scores[2] == pytest.approx(0.0)
    assert scores[1] > scores[0] > 0.0


# --------------------------------------------------------------------------- grouping

# Three prompts (references) interleaved in one request.
REFS = [
    "Katze Hund Maus",
    "Auto Bahn Flugzeug",
    "Katze Hund Maus",
    "Sonne Mond Sterne",
    "Auto Bahn Flugzeug",
    "Katze Hund Maus",
]
COMPS = [
    "Katze Katze Vogel",
    "Auto Fahrrad",
    "Hund Maus Katze Hund",
    "Mond Sterne Katze",
    "Bahn Bahn Auto Katze",
    "Maus Elefant",
]


@pytest.mark.parametrize("language", ["none", "german"])
def test_several_references_fit_per_group(language):
    expected = per_group(COMPS, REFS)  # these texts contain no German stop words
    wrong = whole_batch(COMPS, REFS)
    # Sanity: for this data a single vectorizer on the whole batch gives other scores.
    assert max(abs(a - b) for a, b in zip(expected, wrong, strict=True)) > 1e-3
    scores = tfidf_similarity(COMPS, REFS, language=language)
    assert scores == pytest.approx(expected)
    assert scores != pytest.approx(wrong)


def test_several_references_equal_separate_calls():
    batch = tfidf_similarity(COMPS, REFS, language="german")
    for ref in dict.fromkeys(REFS):
        idx = [i for i, r in enumerate(REFS) if r == ref]
        alone = tfidf_similarity([COMPS[i] for i in idx], [ref] * len(idx), language="german")
        assert [batch[i] for i in idx] == pytest.approx(alone)


def test_several_references_with_german_stop_words():
    refs = ["Die Katze und der Hund", "Das Auto ist rot", "Die Katze und der Hund"]
    comps = ["der Hund und die Maus", "das rote Auto ist schnell", "die Katze ist im Haus"]
    expected = per_group(comps, refs, stop_words=GERMAN_STOPS)
    assert tfidf_similarity(comps, refs, language="german") == pytest.approx(expected)


def test_scores_follow_request_order():
    forward = tfidf_similarity(COMPS, REFS, language="none")
    order = [5, 3, 1, 0, 4, 2]
    shuffled = tfidf_similarity([COMPS[i] for i in order], [REFS[i] for i in order], language="none")
    assert shuffled == pytest.approx([forward[i] for i in order])


def test_group_depends_on_its_own_completions():
    # Adding a completion to ANOTHER reference's group must not change this group's score;
    # adding one to the SAME group changes the idf and hence the score.
    ref_a, ref_b = "Katze Hund Maus", "Auto Bahn"
    base = tfidf_similarity(["Katze Vogel"], [ref_a], language="none")[0]
    other = tfidf_similarity(["Katze Vogel", "Katze Katze"], [ref_a, ref_b], language="none")
    assert other[0] == pytest.approx(base)
    same = tfidf_similarity(["Katze Vogel", "Katze Katze"], [ref_a, ref_a], language="none")
    expected_same = fit_group(ref_a, ["Katze Vogel", "Katze Katze"])
    assert same == pytest.approx(expected_same)
    assert abs(same[0] - base) > 1e-3  # sanity: the idf did change
