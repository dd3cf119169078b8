"""Faults: a replica killed mid-stream costs no client call; a restarted one takes traffic again."""

from __future__ import annotations

import signal
import threading
import time

from conftest import start_server, stop_server

from trainer_client import RewardClient

SAMPLES = [{"completion": f"<answer>\n{i}\n</answer>", "fields": {"answer": str(i)}} for i in range(16)]


def test_sigkill_one_of_three_replicas_loses_no_call_and_restart_rejoins(tmp_path) -> None:
    replicas = [start_server(tmp_path, "--workers", "1") for _ in range(3)]
    target = ",".join(r.address for r in replicas)
    failures: list[BaseException] = []
    done = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal done
        with RewardClient(target, deadline_s=30) as client:
            while not stop.is_set():
                try:
                    result = client.score(SAMPLES, ["xml_correctness", "xml_tag_count"])
                    assert result["xml_correctness"] == [2.0] * 16
                    done += 1
                except BaseException as exc:  # noqa: BLE001 - every failure is recorded and asserted on
                    failures.append(exc)

    callers = [threading.Thread(target=stream) for _ in range(4)]
    try:
        for caller in callers:
            caller.start()
        time.sleep(3)
        assert all(r.score_calls() > 0 for r in replicas), "round robin did not reach every replica"
        victim = replicas[1]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        before = done
        time.sleep(4)
        assert done > before, "no calls completed after the kill"
        port = victim.address.rsplit(":", 1)[1]
        replicas[1] = start_server(tmp_path, "--workers", "1", "--port", port)
        deadline = time.monotonic() + 60
        while replicas[1].score_calls() < 5 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert replicas[1].score_calls() >= 5, "the restarted replica took no traffic"
    finally:
        stop.set()
        for caller in callers:
            caller.join(60)
        for replica in replicas:
            stop_server(replica)
    assert not failures, f"{len(failures)} failed calls, first: {failures[0]!r}"
    assert done > 20
