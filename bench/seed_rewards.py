"""The in-process baseline: the seed notebooks' reward functions, written the way the notebooks do.

This is a faithful copy of notebook-style code, kept apart from the service on purpose: the
baseline must not profit from the service's optimizations. TRL calls each function once per
batch, one after the other, in the trainer process, with conversational completions
(``[[{"role": "assistant", "content": ...}], ...]``) and the dataset columns as keyword
arguments. The tf-idf function fits one ``TfidfVectorizer`` per call on ``answer[0]`` + all
completions, as seed 001 does (the service fits one per reference group instead, which is
more work: see BENCHMARKS.md).

Example:
    >>> text = "<reasoning>\\nx\\n</reasoning>\\n<answer>\\n4\\n</answer>\\n"
    >>> completions = conversational([text])
    >>> correctness_reward_func(None, completions, ["4"]), xmlcount_reward_func(completions)
    ([2.0], [0.5])
"""

from __future__ import annotations

import re

import Levenshtein
from nltk.corpus import stopwords
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from reward_server.stopwords import use_packaged_data

use_packaged_data()  # makes NLTK find the packaged stop word corpus offline

# ---------------------------------------------------------------- seeds 000/002: GSM8K XML format


def extract_xml_answer(text: str) -> str:
    answer = text.split("<answer>")[-1]
    answer = answer.split("</answer>")[0]
    return answer.strip()


def correctness_reward_func(prompts, completions, answer, **kwargs) -> list[float]:
    responses = [completion[0]["content"] for completion in completions]
    extracted_responses = [extract_xml_answer(r) for r in responses]
    return [2.0 if r == a else 0.0 for r, a in zip(extracted_responses, answer, strict=False)]


def int_reward_func(completions, **kwargs) -> list[float]:
    responses = [completion[0]["content"] for completion in completions]
    extracted_responses = [extract_xml_answer(r) for r in responses]
    return [0.5 if r.isdigit() else 0.0 for r in extracted_responses]


def strict_format_reward_func(completions, **kwargs) -> list[float]:
    pattern = r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$"
    responses = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, r) for r in responses]
    return [0.5 if match else 0.0 for match in matches]


def soft_format_reward_func(completions, **kwargs) -> list[float]:
    pattern = r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>"
    responses = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, r) for r in responses]
    return [0.5 if match else 0.0 for match in matches]


def count_xml(text) -> float:
    count = 0.0
    if text.count("<reasoning>\n") == 1:
        count += 0.125
    if text.count("\n</reasoning>\n") == 1:
        count += 0.125
    if text.count("\n<answer>\n") == 1:
        count += 0.125
        count -= len(text.split("\n</answer>\n")[-1]) * 0.001
    if text.count("\n</answer>") == 1:
        count += 0.125
        count -= (len(text.split("\n</answer>")[-1]) - 1) * 0.001
    return count


def xmlcount_reward_func(completions, **kwargs) -> list[float]:
    contents = [completion[0]["content"] for completion in completions]
    return [count_xml(c) for c in contents]


# ---------------------------------------------------------------- seed 001: tf-idf similarity

german_stop_words = stopwords.words("german")


def tfidf_similarity_reward_func(completions, answer, **kwargs) -> list[float]:
    responses = [completion[0]["content"] for completion in completions]
    vectorizer = TfidfVectorizer(stop_words=german_stop_words)
    tfidf = vectorizer.fit_transform([answer[0], *responses])
    similarities = cosine_similarity(tfidf[0:1], tfidf[1:]).flatten()
    return similarities.tolist()


# ---------------------------------------------------------------- seed 003: <think> + \boxed{}


def last_boxed_only_string(string: str) -> str | None:
    idx = string.rfind("\\boxed")
    if idx < 0:
        return None
    i = idx
    right_brace_idx = None
    num_left_braces_open = 0
    while i < len(string):
        if string[i] == "{":
            num_left_braces_open += 1
        if string[i] == "}":
            num_left_braces_open -= 1
            if num_left_braces_open == 0:
                right_brace_idx = i
                break
        i += 1
    return None if right_brace_idx is None else string[idx : right_brace_idx + 1]


def remove_boxed(s: str) -> str:
    left = "\\boxed{"
    return s[len(left) : -1] if s.startswith(left) and s.endswith("}") else s


def format_reward_func(completions, **kwargs) -> list[float]:
    pattern = r"^<think>.*?</think>.*?\\boxed\{.*?\}.*?$"
    contents = [completion[0]["content"] for completion in completions]
    return [1.0 if re.match(pattern, c.strip(), re.DOTALL) else 0.0 for c in contents]


def accuracy_reward_func(completions, answer, **kwargs) -> list[float]:
    contents = [completion[0]["content"] for completion in completions]
    rewards = []
    for content, sol in zip(contents, answer, strict=False):
        boxed = last_boxed_only_string(content)
        rewards.append(1.0 if boxed is not None and remove_boxed(boxed).strip() == sol.strip() else 0.0)
    return rewards


def levenshtein_reward_func(completions, solution, **kwargs) -> list[float]:
    res = []
    for completion, sol in zip(completions, solution, strict=False):
        content = completion[0]["content"]
        if "</think>" not in content:
            res.append(0.0)
            continue
        res.append(Levenshtein.ratio(content.split("</think>")[-1], sol))
    return res


# ---------------------------------------------------------------- seed 004: Unsloth markers

reasoning_start = "<start_working_out>"
reasoning_end = "<end_working_out>"
solution_start = "<SOLUTION>"
solution_end = "</SOLUTION>"

match_format = re.compile(
    rf"{reasoning_end}.*?{solution_start}(.+?){solution_end}[\s]{{0,}}$",
    flags=re.MULTILINE | re.DOTALL,
)
match_numbers = re.compile(solution_start + r".*?[\s]{0,}([-]?[\d\.\,]{1,})", flags=re.MULTILINE | re.DOTALL)


def match_format_exactly(completions, **kwargs) -> list[float]:
    scores = []
    for completion in completions:
        score = 0
        response = completion[0]["content"]
        if match_format.search(response) is not None:
            score += 3.0
        scores.append(score)
    return scores


def match_format_approximately(completions, **kwargs) -> list[float]:
    scores = []
    for completion in completions:
        score = 0
        response = completion[0]["content"]
        score += 0.5 if response.count(reasoning_end) == 1 else -1.0
        score += 0.5 if response.count(solution_start) == 1 else -1.0
        score += 0.5 if response.count(solution_end) == 1 else -1.0
        scores.append(score)
    return scores


def check_answer(prompts, completions, answer, **kwargs) -> list[float]:
    responses = [completion[0]["content"] for completion in completions]
    extracted_responses = [guess.group(1) if (guess := match_format.search(r)) is not None else None for r in responses]
    scores = []
    for guess, true_answer in zip(extracted_responses, answer, strict=False):
        score = 0
        if guess is None:
            scores.append(-2.0)
            continue
        if guess == true_answer:
            score += 5.0
        elif guess.strip() == true_answer.strip():
            score += 3.5
        else:
            try:
                ratio = float(guess) / float(true_answer)
                if 0.9 <= ratio <= 1.1:
                    score += 2.0
                elif 0.8 <= ratio <= 1.2:
                    score += 1.5
                else:
                    score -= 2.5
            except (ValueError, ZeroDivisionError):
                score -= 4.5
        scores.append(score)
    return scores


def check_numbers(prompts, completions, answer, **kwargs) -> list[float]:
    responses = [completion[0]["content"] for completion in completions]
    extracted_responses = [
        guess.group(1) if (guess := match_numbers.search(r)) is not None else None for r in responses
    ]
    scores = []
    for guess, true_answer in zip(extracted_responses, answer, strict=False):
        if guess is None:
            scores.append(-2.5)
            continue
        try:
            true_answer = float(true_answer.strip())
            guess = float(guess.strip().replace(",", ""))
            scores.append(3.5 if guess == true_answer else -1.5)
        except ValueError:
            scores.append(0)
            continue
    return scores


#: The seed functions in the order of ``bench.workload.SEED_REWARDS`` (the service's names).
SEED_FUNCS = (
    correctness_reward_func,
    int_reward_func,
    strict_format_reward_func,
    soft_format_reward_func,
    xmlcount_reward_func,
    format_reward_func,
    accuracy_reward_func,
    levenshtein_reward_func,
    match_format_exactly,
    match_format_approximately,
    check_answer,
    check_numbers,
    tfidf_similarity_reward_func,
)


def conversational(completions: list[str]) -> list[list[dict[str, str]]]:
    """Completions as TRL passes them for a chat dataset."""
    return [[{"role": "assistant", "content": c}] for c in completions]


def score_in_process(completions, answer: list[str], solution: list[str]) -> list[list[float]]:
    """Every seed reward over one batch, sequentially, as TRL's trainer calls them in-process."""
    return [f(prompts=None, completions=completions, answer=answer, solution=solution) for f in SEED_FUNCS]
