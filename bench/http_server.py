"""Reference HTTP/JSON reward server in the style of OpenRLHF's remote reward model (benchmarks only).

OpenRLHF's ``serve_rm.py`` is a FastAPI app run by uvicorn: one ``POST /get_reward`` per batch,
a JSON body with the ``query`` texts, the rewards computed inside the request handler, a JSON
reply with ``rewards``. This server does the same with the service's own reward code (the
registry's ``score_batch``, the same functions the gRPC workers run), so that a comparison
with the gRPC service measures transport and execution model, not different rewards.

Body: ``{"query": [completion, ...], "fields": [{"answer": ..., ...}, ...], "rewards": [name, ...]}``.
Reply: ``{"rewards": [total, ...], "scores": {name: [score, ...]}}``.

Run: ``python -m bench.http_server --port 0`` (prints ``http-reward-server listening on HOST:PORT``).
"""

from __future__ import annotations

import argparse
import math
import socket

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.common import service_scores

app = FastAPI()


def score(completions: list[str], fields: list[dict[str, str]], rewards: list[str]) -> dict:
    """Every reward over the batch, one after the other, and the per-sample totals (NaN-skipping sums)."""
    scores = service_scores(completions, fields, rewards)
    totals = [math.fsum(s[i] for s in scores.values() if not math.isnan(s[i])) for i in range(len(completions))]
    return {"rewards": totals, "scores": scores}


@app.post("/get_reward")
async def get_reward(request: Request) -> JSONResponse:
    # As in OpenRLHF: parse, compute in the handler, reply.
    data = await request.json()
    return JSONResponse(score(data["query"], data["fields"], data["rewards"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # Bind first, so that port 0 gives a free port whose number can be printed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)  # connections made before uvicorn runs wait in the backlog
    host, port = sock.getsockname()
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"http-reward-server listening on {host}:{port}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
