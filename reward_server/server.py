"""The reward server process: gRPC server, health, reflection, worker pool, graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
from concurrent.futures import Executor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reward_server import metrics
from reward_server.auth import Authenticator
from reward_server.cancellation import CancelBoard
from reward_server.code.engines import startup as code_startup
from reward_server.config import ConfigError, ServerConfig
from reward_server.healthcheck import REWARD_SERVICE
from reward_server.judges.startup import Judges, start_judges
from reward_server.models.startup import LoadedModels, load_model_rewards
from reward_server.plugins import Catalogue, load_catalogue
from reward_server.pool import make_executor, warm_up
from reward_server.registry import REGISTRY, Registry
from reward_server.reload import Reloader
from reward_server.scoring import Scorer
from reward_server.transport.grpc_servicer import RewardServicer, add_to_server
from reward_server.transport.interceptors import ServerInterceptor
from reward_server.transport.profiles import Profile, check_profiles
from reward_server.transport.server import HttpTransport

log = logging.getLogger(__name__)


class AddressInUse(OSError):
    """The address cannot be bound (another program, or another reward-server, listens there)."""


def probe_bind(host: str, port: int) -> None:
    """Raise :class:`AddressInUse` when ``host:port`` cannot be bound, before gRPC tries (and logs its own lines).

    Binds as gRPC does (SO_REUSEADDR, no SO_REUSEPORT) and lets go at once.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AddressInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                raise AddressInUse(
                    f"cannot listen on {host}:{port}: {exc.strerror} (another program, or another reward-server, "
                    "listens there; pick another --port)"
                ) from None


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files (mTLS when a client CA is given), or None."""
    if not config.tls_cert_file:
        return None
    try:
        key, chain = Path(config.tls_key_file).read_bytes(), Path(config.tls_cert_file).read_bytes()
        client_ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    except OSError as exc:
        raise ConfigError(f"cannot read TLS file: {exc}") from exc
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=client_ca, require_client_auth=bool(client_ca))


class RewardServer:
    """Owns the gRPC server and the worker pool for one process lifetime."""

    def __init__(self, config: ServerConfig, registry: Registry = REGISTRY) -> None:
        self.config = config
        # Plugins first: reward code that cannot be served refuses the start (PluginError) before anything runs.
        self.catalogue = load_catalogue(registry, config.rewards_from, config.rewards_entry_points)
        self.registry = registry = self.catalogue.registry
        # Profiles against the catalogue with the plugins' rewards, before any model, judge or worker starts (the
        # rewards of reward models and judges are checked again once they register, in start()).
        self.profiles: dict[str, Profile] = check_profiles(config.profiles, registry, pending=_pending_rewards(config))
        self.cancel_board = CancelBoard()
        self.executor = make_executor(config, self.cancel_board, self.catalogue)
        self.scorer = Scorer(registry, self.executor, config.limits(), self.cancel_board)
        self.reloader = Reloader(self)
        self.health = health.aio.HealthServicer()
        self.authenticator = Authenticator.from_file(config.auth_file) if config.auth_file else None
        self.interceptor = ServerInterceptor(self.authenticator)
        #: The HTTP/JSON transport (``--http-port``): its socket, uvicorn server and task, and the profiles.
        self.http: HttpTransport | None = None
        self.stopping = False
        self.server = grpc.aio.server(
            interceptors=[self.interceptor],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                # Clients reconnect (and so re-resolve DNS) every few minutes: replicas an autoscaler
                # adds get traffic from trainers already running. Calls in flight get the grace period.
                ("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)),
                ("grpc.max_connection_age_grace_ms", int(config.grace_s * 1000)),
                # gRPC sets SO_REUSEPORT by default: a second server would start and silently share the
                # port (and the callers) with the first, possibly serving other reward code.
                ("grpc.so_reuseport", 1 if config.reuse_port else 0),
            ],
        )
        self.servicer = RewardServicer(self.scorer, registry, on_broken_pool=self._replace_pool)
        add_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if config.reflection:
            names = (
                REWARD_SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            )
            reflection.enable_server_reflection(names, self.server)
        self.port = 0
        self.metrics_port: int | None = None
        self.models = LoadedModels()
        self.judges = Judges()

    def _replace_pool(self) -> None:
        """A fresh worker pool for a broken one. Every call that was in the broken pool (a coalesced trip carries
        several) reports it; the first replaces the pool, the others find it replaced already."""
        if not getattr(self.executor, "_broken", False):
            return
        old, self.executor = self.executor, make_executor(self.config, self.cancel_board, self.catalogue)
        self.scorer.executor = self.executor
        old.shutdown(wait=False, cancel_futures=True)
        log.warning("replaced the broken scoring worker pool (%d workers)", self.config.workers)

    def use(self, catalogue: Catalogue, executor: Executor) -> Scorer:
        """Serve the next calls with ``catalogue`` on the warm ``executor`` (one scorer holds both, so a call
        never mixes old and new); returns the old scorer, whose calls finish on the old code."""
        old = self.scorer
        self.scorer = Scorer(catalogue.registry, executor, self.config.limits(), self.cancel_board)
        self.scorer.costs = old.costs
        self.catalogue, self.registry, self.executor = catalogue, catalogue.registry, executor
        self.servicer.scorer, self.servicer.registry = self.scorer, catalogue.registry
        return old

    def _bind(self) -> None:
        """Claim the address first, before any model or worker starts, so that a port in use fails in a moment.

        Binding does not accept calls yet: gRPC listens once the server starts, after models and workers.
        """
        credentials = server_credentials(self.config)
        address = self.config.address
        if not self.config.reuse_port:
            probe_bind(self.config.host, self.config.port)
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(address, credentials)
        except RuntimeError as exc:  # grpcio raises "Failed to bind to address ..."
            raise AddressInUse(f"cannot listen on {address}: address in use or not available ({exc})") from None
        if not self.port:
            raise AddressInUse(f"cannot listen on {address}: address in use or not available")

    async def start(self) -> str:
        try:
            self._bind()
            # The HTTP port is claimed here too, before the sandbox self-test, models and judges: a port in use
            # fails in a moment, not after minutes of model loading.
            if self.config.http_port is not None:
                try:
                    tls = bool(self.config.tls_cert_file)  # HTTPS with gRPC's certificate (transport.server)
                    self.http = HttpTransport.bind(self.config.host, self.config.http_port, tls=tls)
                except OSError as exc:
                    raise AddressInUse(str(exc)) from None
            # Code rewards: served only where the sandbox passes its self-test (or its engine is remote) and the
            # operator has not switched them off; otherwise ListRewards says why.
            code_startup(self.config.code_settings(), self.registry)
            # Models load before the server starts: a server that cannot score a reward it enables never listens.
            self.models = await load_model_rewards(self.config, self.registry)
            self.judges = await start_judges(self.config.judges, self.registry)
            # Profiles again, with every reward registered: those of reward models and judges, and what start-up
            # disabled (the other checks ran before anything loaded: config validation, then __init__).
            self.profiles = check_profiles(self.config.profiles, self.registry)
        except BaseException:
            self.executor.shutdown(wait=False, cancel_futures=True)
            raise
        await warm_up(self.executor, self.config.workers, expect=self.catalogue.versions())
        await self.server.start()
        if self.http is not None:
            await self.http.start(self)
        if self.config.metrics_port is not None:
            metrics.METRICS.register(metrics.ModelCollector(self.models.stats))
            self.metrics_port = metrics.serve_metrics(self.config.metrics_port, self.config.metrics_host)
        for service in ("", REWARD_SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return dataclasses.replace(self.config, port=self.port).address

    async def stop(self) -> None:
        """Report NOT_SERVING, let in-flight calls finish within the grace period, then stop."""
        await self.health.enter_graceful_shutdown()
        self.stopping = True  # new HTTP calls get 503; those in flight are counted by the interceptor
        # stop() refuses new calls at once; in-flight unary calls get the grace period. Health
        # Watch streams never end by themselves, so they are cancelled once the calls are done.
        in_flight, finished = self.interceptor.in_flight, self.interceptor.finished
        stopping = asyncio.ensure_future(self.server.stop(self.config.grace_s))
        drained = await self.interceptor.drained(self.config.grace_s)
        let_finish = self.interceptor.finished - finished
        if drained:
            log.info("drained: let %d of %d call(s) in flight finish", let_finish, in_flight)
        else:
            log.warning(
                "grace period of %.0f s over: let %d of %d call(s) finish, %d still in flight are cut off",
                self.config.grace_s,
                let_finish,
                in_flight,
                self.interceptor.in_flight,
            )
        await self.server.stop(None)
        await stopping
        if self.http is not None:
            await self.http.stop()
        await self.reloader.close()
        await self.models.close()
        await self.judges.close()
        self.executor.shutdown(wait=True, cancel_futures=True)


def _pending_rewards(config: ServerConfig) -> set[str]:
    """The rewards that register during start-up: reward models and judges (checked in profiles once they have)."""
    return {spec.name for spec in config.reward_models} | set(config.judges)


async def serve(config: ServerConfig) -> None:
    """Run the server until SIGINT/SIGTERM, then shut down gracefully (``config`` already validated)."""
    server = RewardServer(config)
    address = await server.start()
    if server.metrics_port is not None:
        print(f"reward-server metrics on http://{config.metrics_host}:{server.metrics_port}/metrics", flush=True)
    scheme = "mTLS" if config.tls_client_ca_file else "TLS" if config.tls_cert_file else "plaintext"
    auth = f"auth: {config.auth_file}" if config.auth_file else "no auth"
    if server.http is not None:
        print(
            f"reward-server HTTP/JSON on {server.http.url} (profiles: {', '.join(server.profiles) or 'none'})",
            flush=True,
        )
    print(f"reward-server listening on {address} ({scheme}, {auth})", flush=True)
    if server.catalogue.names:
        plugins = server.catalogue.registry
        loaded = ", ".join(f"{n} ({plugins.get(n).source})" for n in sorted(server.catalogue.names))
        print(f"reward-server plugin rewards: {loaded}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reloader.request, "SIGHUP")
    if config.reload_on_change:
        server.reloader.watch()
    await stop.wait()
    log.info("shutting down (grace %.0f s)", config.grace_s)
    await server.stop()
