"""Smoke test of bench/bench_sentiment.py: it runs end to end in ``--quick`` form and writes its figures.

No timing is asserted (speed belongs to bench/ and BENCHMARKS.md); the test keeps the script working.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_bench_sentiment_quick_writes_every_figure(tmp_path) -> None:
    out = tmp_path / "sentiment.json"
    result = subprocess.run(
        [sys.executable, "bench/bench_sentiment.py", "--quick", "--raw", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "sentiment" and doc["config"]["quick"] and doc["config"]["device"] == "cpu"
    assert doc["workload"]["tokens_per_word"] > 1
    for way in ("seed", "server"):
        (run,) = doc[way]
        assert run["sequences"] == 8 and run["sequences_per_s"] > 0 and run["requests"] == 2
    assert doc["server"][0]["batches"] >= 1 and doc["server_vs_seed"] > 0 and doc["server_vs_raw"] > 0
    # The server's scores are the pipeline's probabilities (fp32 on CPU: equal up to rounding).
    assert doc["agreement_with_pipeline"]["samples"] == 4 and doc["agreement_with_pipeline"]["max_abs_diff"] < 1e-5
