"""The reward server process: gRPC server, health, reflection, worker pool, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import signal
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reward.v1 import reward_pb2
from reward_server import worker
from reward_server.config import ServerConfig
from reward_server.models.startup import LoadedModels, load_model_rewards
from reward_server.registry import REGISTRY, Registry
from reward_server.scoring import Limits, Scorer
from reward_server.servicer import RewardServicer, add_to_server

log = logging.getLogger(__name__)

SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name


def make_executor(config: ServerConfig) -> Executor:
    """A warm pool: worker processes (spawned, never forked from a gRPC process) or threads."""
    if config.workers == 0:
        worker.init_worker(config.worker_settings())
        return ThreadPoolExecutor(max_workers=4, thread_name_prefix="reward")
    return ProcessPoolExecutor(
        max_workers=config.workers,
        mp_context=mp.get_context("spawn"),
        initializer=worker.init_worker,
        initargs=(config.worker_settings(),),
    )


async def warm_up(executor: Executor, workers: int, timeout: float = 600.0) -> None:
    """Wait until every worker has run its initializer, so the first requests pay no start-up cost.

    A worker takes tasks only once its initializer is done, and one ready worker can answer every
    ping while the others still import; so ping until each worker has answered (by process id).
    """
    loop = asyncio.get_running_loop()
    if not isinstance(executor, ProcessPoolExecutor):
        await loop.run_in_executor(executor, worker.ping)
        return
    ready: set[int] = set()
    deadline = loop.time() + timeout
    while len(ready) < workers:
        if loop.time() > deadline:
            log.warning("only %d of %d scoring workers are ready after %.0f s", len(ready), workers, timeout)
            return
        ready.update(await asyncio.gather(*(loop.run_in_executor(executor, worker.ping, 0.05) for _ in range(workers))))


class RewardServer:
    """Owns the gRPC server and the worker pool for one process lifetime."""

    def __init__(self, config: ServerConfig, registry: Registry = REGISTRY) -> None:
        self.config = config
        self.registry = registry
        self.executor = make_executor(config)
        self.scorer = Scorer(
            registry,
            self.executor,
            Limits(max_samples=config.max_samples_per_request, max_rewards=config.max_rewards_per_request),
        )
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
            ]
        )
        add_to_server(RewardServicer(self.scorer, registry, on_broken_pool=self._replace_pool), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if config.reflection:
            names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, self.server)
        self.port = 0
        self.models = LoadedModels()

    def _replace_pool(self) -> None:
        old, self.executor = self.executor, make_executor(self.config)
        self.scorer.executor = self.executor
        old.shutdown(wait=False, cancel_futures=True)

    async def start(self) -> str:
        try:
            # Models load before the port opens: a server that cannot score a reward it enables never listens.
            self.models = await load_model_rewards(self.config, self.registry)
        except BaseException:
            self.executor.shutdown(wait=False, cancel_futures=True)
            raise
        await warm_up(self.executor, self.config.workers)
        self.port = self.server.add_insecure_port(self.config.address)
        if not self.port:
            raise OSError(f"cannot listen on {self.config.address}")
        await self.server.start()
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{host}:{self.port}"

    async def stop(self) -> None:
        """Report NOT_SERVING, let in-flight calls finish within the grace period, then stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.config.grace_s)
        await self.models.close()
        self.executor.shutdown(wait=True, cancel_futures=True)


async def serve(config: ServerConfig) -> None:
    """Run the server until SIGINT/SIGTERM, then shut down gracefully."""
    server = RewardServer(config)
    address = await server.start()
    print(f"reward-server listening on {address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down (grace %.0f s)", config.grace_s)
    await server.stop()
