"""The HTTP transport's place in the server's lifetime: bound with the gRPC port (before models load, so a port in
use refuses the start early), started once gRPC serves, stopped after the shared drain. With gRPC on TLS
(``tls_cert_file``), the HTTP port serves HTTPS with the same certificate and key, and with mTLS
(``tls_client_ca_file``) it requires a client certificate under the same CA: bearer tokens never travel in clear
where gRPC's do not.

Starlette and uvicorn are imported only when ``http_port`` is set.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reward_server.config import ServerConfig
    from reward_server.server import RewardServer


def ssl_options(config: ServerConfig) -> dict[str, Any]:
    """uvicorn's TLS options from gRPC's PEM files: none without ``tls_cert_file``; a required, verified client
    certificate with ``tls_client_ca_file`` (as gRPC's ``require_client_auth``).

    Example:
        >>> from reward_server.config import ServerConfig
        >>> ssl_options(ServerConfig())
        {}
        >>> sorted(ssl_options(ServerConfig(tls_cert_file="c.pem", tls_key_file="k.pem", tls_client_ca_file="ca.pem")))
        ['ssl_ca_certs', 'ssl_cert_reqs', 'ssl_certfile', 'ssl_keyfile']
    """
    if not config.tls_cert_file:
        return {}
    options: dict[str, Any] = {"ssl_certfile": config.tls_cert_file, "ssl_keyfile": config.tls_key_file}
    if config.tls_client_ca_file:
        options.update(ssl_ca_certs=config.tls_client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


class HttpTransport:
    """The listening socket, then the uvicorn server of :func:`transport.http.build_app` on it."""

    def __init__(self, sock: socket.socket, host: str, tls: bool = False) -> None:
        self.socket = sock
        self.host = host
        self.port: int = sock.getsockname()[1]
        self.tls = tls
        self._server: Any = None
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @classmethod
    def bind(cls, host: str, port: int, tls: bool = False) -> HttpTransport:
        """Listen on ``host:port`` (0 = a free port); the OSError names the address when it is taken."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen for HTTP on {host}:{port} (http_port): {exc.strerror or exc}") from None
        sock.listen(2048)
        sock.setblocking(False)
        return cls(sock, host, tls)

    async def start(self, server: RewardServer) -> None:
        from reward_server.transport import http

        backend = http.Backend(
            scorer=lambda: server.scorer,
            interceptor=server.interceptor,
            authenticator=server.authenticator,
            profiles=server.profiles,
            on_broken_pool=server._replace_pool,
            max_body_bytes=server.config.max_message_bytes,
            serving=lambda: not server.stopping,
        )
        self._server, self._task = await http.start(
            http.build_app(backend), self.socket, server.config.grace_s, ssl_options(server.config)
        )

    async def stop(self) -> None:
        """Close the connections (calls in flight have been drained with gRPC's) and end uvicorn's task."""
        if self._server is None or self._task is None:
            self.socket.close()
            return
        self._server.should_exit = True
        await self._task
