"""Where a worker's time goes: each seed reward alone, the notebooks' function vs the service's code.

On the seed workload's 128-completion batch, per reward and round-robin: the seed function (as
the notebooks write it), the service's ``score_batch`` on the main thread (as a scoring worker
runs it, with the per-sample time budget armed through SIGALRM), and the same ``score_batch`` on
another thread (where the time budget is off): the last two differ by the budget's cost alone.
For tf-idf, scikit-learn fitted per reference group (the semantics the service implements) is
timed too, to show what the fast tf-idf saves.

Run: ``python -m bench.bench_rewards [--repeats 50]`` → ``bench/results/rewards.json``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

import reward_server.rewards  # noqa: F401 - registers the catalogue
from bench import seed_rewards
from bench.common import base_parser, interleaved, summary, write_result
from bench.workload import SEED_REWARDS, Batch, make_batch
from reward_server.registry import REGISTRY
from reward_server.registry import Batch as RewardBatch
from reward_server.stopwords import stop_words

#: One long-lived non-main thread (the time budget arms only on the main thread); a call costs ~0.05 ms more.
OTHER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="no-budget")


def on_thread(function: Callable[[], object]) -> Callable[[], object]:
    return lambda: OTHER_THREAD.submit(function).result()


def service(name: str, batch: Batch) -> Callable[[], object]:
    reward = REGISTRY.get(name)
    params = reward.defaults()
    columns = reward.columns(params, batch.fields())
    return lambda: reward.score_batch(RewardBatch(batch.completions, columns), **params)


def sklearn_per_group(batch: Batch) -> Callable[[], list[float]]:
    """tf-idf as specified, with scikit-learn: one vectorizer per reference group."""
    words = list(stop_words("german"))

    def score() -> list[float]:
        out = [0.0] * len(batch)
        for reference in dict.fromkeys(batch.answers):
            rows = [i for i, r in enumerate(batch.answers) if r == reference]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                matrix = TfidfVectorizer(stop_words=words).fit_transform(
                    [reference, *(batch.completions[i] for i in rows)]
                )
            for i, s in zip(rows, cosine_similarity(matrix[0:1], matrix[1:])[0], strict=True):
                out[i] = float(s)
        return out

    return score


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    batch = make_batch(prompts=2 if args.quick else 16)
    repeats = 3 if args.quick else args.repeats
    conversational = seed_rewards.conversational(batch.completions)
    rows = {}
    for name, seed in zip(SEED_REWARDS, seed_rewards.SEED_FUNCS, strict=True):
        candidates = {
            "seed_function": lambda f=seed: f(
                prompts=None, completions=conversational, answer=batch.answers, solution=batch.solutions
            ),
            "service_main_thread": service(name, batch),
            "service_other_thread": on_thread(service(name, batch)),
        }
        if name == "tfidf_similarity":
            candidates["sklearn_per_group"] = sklearn_per_group(batch)
        times = interleaved(candidates, repeats, warmup=2)
        rows[name] = {key: summary(t)["median_ms"] for key, t in times.items()}
        print(name, rows[name])
    keys = ("seed_function", "service_main_thread", "service_other_thread")
    totals = {key: round(sum(r[key] for r in rows.values()), 3) for key in keys}
    print("total", totals)
    write_result(
        "rewards",
        {
            "config": {"completions": len(batch), "rewards": list(SEED_REWARDS), "repeats": repeats},
            "median_ms": rows,
            "total_median_ms": totals,
            "note": "service_other_thread includes a hand-off to a waiting thread per call (~0.05 ms)",
        },
        args.out,
    )


if __name__ == "__main__":
    main()
