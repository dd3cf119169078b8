"""The fixed seed workload: German-looking GRPO batches carrying the seed notebooks' tags.

A batch is ``prompts`` groups of ``per_prompt`` completions (GRPO samples several completions
per prompt); every completion of a group shares its reference fields. Completions mix the
seeds' formats (``<reasoning>``/``<answer>``, ``<think>`` + ``\\boxed{}``, Unsloth markers) so
that every reward takes its real code path, and are padded with German-looking sentences to
about ``size`` characters. Everything derives from ``seed``: the same arguments give the same
batch on every machine.

Example:
    >>> batch = make_batch(prompts=2, per_prompt=3, size=500)
    >>> len(batch.completions), len(set(batch.answers)), batch == make_batch(prompts=2, per_prompt=3, size=500)
    (6, 2, True)
    >>> 400 < sum(map(len, batch.completions)) / 6 < 700
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: The CPU rewards of the seed notebooks (000-004), by their service names; tf-idf dominates the cost.
SEED_REWARDS: tuple[str, ...] = (
    "xml_correctness",
    "xml_integer",
    "xml_strict_format",
    "xml_soft_format",
    "xml_tag_count",
    "think_boxed_format",
    "boxed_accuracy",
    "solution_levenshtein",
    "format_exact",
    "format_approximate",
    "answer_check",
    "number_check",
    "tfidf_similarity",
)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_WORDS = _words(
    "der die das und ist nicht mit auf für von dem den ein eine sich auch als noch wie nach aus bei "
    "Strand Sonne Meer Berge Wanderung Urlaub Familie Kinder Wetter Regen Stadt Reise Zug Bahnhof "
    "Frühstück Brötchen Kaffee Kuchen Garten Blumen Hund Katze Schule Lehrerin Aufgabe Rechnung Zahl "
    "Summe Ergebnis Schritt Lösung Antwort Begründung Gleichung Apfel Birne Preis Euro Stunde Minute "
    "Woche Monat schön groß klein schnell langsam wichtig richtig falsch einfach schwierig zusammen "
    "gerechnet addiert multipliziert geteilt bleibt ergibt bekommt kauft verkauft fährt läuft schreibt "
    "Übung Größe Straße Mädchen Bäcker Brücke Fluss Wald Dorf Nachbar Freundin Geschenk Geburtstag"
)


@dataclass(frozen=True)
class Batch:
    """One Score call's worth of samples: completions plus the fields the rewards read."""

    completions: list[str]
    answers: list[str]
    solutions: list[str]

    def fields(self) -> list[dict[str, str]]:
        """Per-sample fields as the service and TRL see them (the dataset columns)."""
        return [{"answer": a, "solution": s} for a, s in zip(self.answers, self.solutions, strict=True)]

    def __len__(self) -> int:
        return len(self.completions)


_PARTS = _words(
    "haus arbeit zeit stadt wasser land schul bahn feuer wald berg kinder sonnen wetter zahl rechen "
    "ver ge be ent zer über unter vor nach aus ein an ab"
)
_ENDS = _words("ung heit keit schaft lich ig isch en er chen lein werk platz weg stück")


def _word(rng: random.Random) -> str:
    # Mostly everyday words; about one in four a made-up compound, so the vocabulary grows like real text.
    if rng.random() < 0.75:
        return rng.choice(_WORDS)
    return "".join(rng.choices(_PARTS, k=rng.randint(1, 3))) + rng.choice(_ENDS)


def _sentence(rng: random.Random) -> str:
    words = [_word(rng) for _ in range(rng.randint(6, 14))]
    return " ".join(words)[:1].upper() + " ".join(words)[1:] + rng.choice((".", ".", ".", "!", "?"))


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    length = 0
    while length < chars:
        out.append(_sentence(rng))
        length += len(out[-1]) + 1
    return " ".join(out)


def _completion(rng: random.Random, style: int, number: int, answer: str, size: int) -> str:
    """One completion in one of the seeds' formats, padded with German text to about ``size`` chars."""
    guess = number if rng.random() < 0.5 else number + rng.randint(-3, 3)
    # The shape around the padding; its own length is subtracted from the size.
    if style == 0:  # GSM8K XML (seeds 000/002), mostly well formed
        shape = "<reasoning>\n{pad}\n</reasoning>\n<answer>\n" + str(guess) + "\n</answer>\n"
    elif style == 1:  # R1 style (seed 003): think, then a boxed answer and a German solution
        after = _text(rng, size * 2 // 5)
        shape = "<think>\n{pad}\n</think>\n" + after + " Also ist das Ergebnis \\boxed{" + str(guess) + "}."
    elif style == 2:  # Unsloth markers (seed 004)
        shape = "<start_working_out>{pad}<end_working_out><SOLUTION>" + str(guess) + "</SOLUTION>"
    else:  # free text with stray tags: the rewards' negative paths
        shape = "{pad} <answer>" + str(guess) + " Euro</answer> </think> " + answer
    pad = _text(rng, max(size - len(shape) + 5, 20))
    return shape.replace("{pad}", pad)


def make_batch(prompts: int = 16, per_prompt: int = 8, size: int = 1750, seed: int = 0) -> Batch:
    """``prompts`` × ``per_prompt`` completions of about ``size`` characters, grouped by prompt.

    Each prompt has a German reference answer (for tf-idf and the tag rewards) and a German
    solution (for Levenshtein); its completions are contiguous, as TRL lays out a GRPO batch.
    """
    rng = random.Random(f"{seed}-{prompts}-{per_prompt}-{size}")
    completions, answers, solutions = [], [], []
    for p in range(prompts):
        number = rng.randint(2, 999)
        answer = _text(rng, 160)
        solution = f"Also ist das Ergebnis \\boxed{{{number}}}. " + answer
        for k in range(per_prompt):
            completions.append(_completion(rng, (p + k) % 4, number, answer, size))
            answers.append(answer)
            solutions.append(solution)
    return Batch(completions, answers, solutions)


def sized_batch(n: int, size: int = 1750, per_prompt: int = 8, seed: int = 0) -> Batch:
    """A batch of ``n`` completions in groups of ``per_prompt`` (the last group may be smaller)."""
    groups = -(-n // per_prompt)
    full = make_batch(prompts=groups, per_prompt=per_prompt, size=size, seed=seed)
    return Batch(full.completions[:n], full.answers[:n], full.solutions[:n])
