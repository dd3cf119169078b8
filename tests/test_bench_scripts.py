"""Smoke tests of the benchmark scripts: each runs end to end in its ``--quick`` configuration and writes
valid JSON with the figures it promises. No timing is asserted (speed is what bench/ measures, not tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_module


def run_bench(module: str, tmp_path: Path, *args: str, timeout: float = 600) -> dict:
    out = tmp_path / f"{module}.json"
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "0"}
    result = run_module(f"bench.{module}", "--quick", "--out", str(out), *args, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["benchmark"] and document["machine"]["cores"] >= 1
    return document


def positive_timing(stats: dict) -> bool:
    return stats["n"] >= 1 and 0 < stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]


def test_latency(tmp_path):
    doc = run_bench("bench_latency", tmp_path)
    assert set(doc["results"]) == {"in_process_seed", "in_process_service", "grpc"}
    assert all(positive_timing(s) for s in doc["results"].values())
    assert doc["grpc_vs_in_process_seed"]["ratio_of_medians"] > 0
    assert set(doc["seed_function_median_ms"]) >= {"tfidf_similarity_reward_func", "levenshtein_reward_func"}


def test_throughput(tmp_path):
    doc = run_bench("bench_throughput", tmp_path)
    assert [(p["workers"], p["callers"]) for p in doc["grpc"]] == [(1, 1), (1, 2)]
    assert all(p["calls"] > 0 and p["completions_per_s"] > 0 for p in doc["grpc"])
    assert doc["in_process_seed"]["completions_per_s"] > 0


def test_http_vs_grpc(tmp_path):
    doc = run_bench("bench_http", tmp_path)
    assert [row["callers"] for row in doc["results"]] == [1, 2]
    for row in doc["results"]:
        assert row["grpc"]["calls"] > 0 and row["http"]["calls"] > 0 and row["grpc_over_http"] > 0


def test_single_vs_batched(tmp_path):
    doc = run_bench("bench_single", tmp_path)
    assert set(doc["results"]) == {"cpu", "math", "model"}
    for row in doc["results"].values():
        assert set(row["samples_per_s"]) == {"grpc_single", "grpc_batched", "http_single", "http_batched"}
        assert all(v > 0 for v in row["samples_per_s"].values())


def test_growth_writes_json_and_plot(tmp_path):
    plot = tmp_path / "plot.png"
    doc = run_bench("bench_growth", tmp_path, "--plot", str(plot))
    assert [p["completions"] for p in doc["by_batch"]] == [8, 16]
    assert [p["chars"] for p in doc["by_size"]] == [200, 400]
    for point in doc["by_batch"] + doc["by_size"]:
        assert all(positive_timing(point[way]) for way in ("in_process", "http", "grpc"))
    assert set(doc["by_batch_slopes"]) == {"in_process", "http", "grpc"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rewards_breakdown(tmp_path):
    doc = run_bench("bench_rewards", tmp_path)
    assert set(doc["median_ms"]) == set(doc["config"]["rewards"])
    tfidf = doc["median_ms"]["tfidf_similarity"]
    assert {"seed_function", "service_main_thread", "service_other_thread", "sklearn_per_group"} <= set(tfidf)
    assert all(v > 0 for row in doc["median_ms"].values() for v in row.values())


def test_accuracy_bench(tmp_path):
    doc = run_bench("bench_accuracy", tmp_path)
    assert set(doc["accuracy_reward"]) == {"in_process_trl", "remote"}
    assert all(positive_timing(s) for s in doc["accuracy_reward"].values())
    assert doc["remote_over_in_process"]["ratio_of_medians"] > 0 and doc["config"]["samples"] == 16
    others = doc["other_rewards_median_ms"]
    assert {"cosine_scaled_reward", "open_r1_length", "soft_overlong_punishment_reward"} <= set(others)
    assert all(row["remote"] > 0 for row in others.values())


def test_reward_model_server_vs_raw(tmp_path):
    doc = run_bench("bench_reward_model", tmp_path)
    assert [(r["model"], r["tokens"], r["callers"]) for r in doc["results"]] == [
        ("bert", 128, 1),
        ("bert", 128, 2),
        ("decoder", 128, 1),
        ("decoder", 128, 2),
    ]
    for row in doc["results"]:
        assert row["server_vs_raw"] > 0 and row["agreement_max_abs_diff"] < 1e-4  # the same inputs, both ways


@pytest.mark.slow
def test_grpo_step(tmp_path):
    doc = run_bench("bench_grpo_step", tmp_path)
    for mode in ("in_process", "remote", "in_process_async"):
        assert positive_timing(doc["results"][mode]["step"])
    # Learning rate 0: every mode sampled the very same completions, step by step.
    lengths = [doc["results"][mode]["mean_completion_tokens_per_step"] for mode in ("in_process", "remote")]
    assert lengths[0] == lengths[1] and lengths[0]
    assert doc["remote_over_in_process"] > 0


@pytest.mark.parametrize("module", ["bench.workload", "bench.seed_rewards", "bench.common"])
def test_doctests_of_the_bench_helpers(module):
    import doctest
    import importlib

    failed, attempted = doctest.testmod(importlib.import_module(module))
    assert attempted > 0 and failed == 0


def test_code_sandbox_bench(tmp_path):
    doc = run_bench("bench_code", tmp_path)
    assert doc["tests_per_completion"] == 10 and len(doc["problems"]) >= 10
    for engine in ("unsandboxed", "sandboxed"):
        assert doc["per_completion"][engine]["n"] == 6 and doc["per_completion"][engine]["p50_ms"] > 0
        assert doc["throughput"][engine]["completions"] > 0
    assert doc["sandboxed_over_unsandboxed"] > 0 and doc["bare_bwrap"]["p50_ms"] > 0
    assert doc["served"]["completions"] > 0  # and every reference solution scored 1.0 (the bench checks)


def test_judges_bench(tmp_path):
    """bench_judges end to end against a loopback stand-in endpoint (test_judges.StandIn), not vLLM: the figures
    are the stand-in's, what is smoke-tested is the two ways, the paired rounds and the JSON."""
    from test_judges import StandIn

    stand_in = StandIn()
    doc = run_bench("bench_judges", tmp_path, "--endpoint", stand_in.url, "--model", "fixed", timeout=120)
    assert doc["settings"]["rounds"] == 2 and doc["first_way_per_round"] == ["direct", "service"]
    assert all(len(rates) == 2 and min(rates) > 0 for rates in doc["rounds"].values())
    assert len(doc["service_vs_direct_per_round"]) == 2 and doc["service_vs_direct"] > 0
    assert stand_in.calls == 3 * 2 * 16  # warm-up and 2 rounds, both ways, 16 distinct prompts each: none sent twice
    assert len({body["messages"][-1]["content"] for body in stand_in.bodies}) == stand_in.calls
