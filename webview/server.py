"""uvicorn on the daemon's own event loop, at two doors (webview.infra.doors): the local one on the
socket the daemon bound before it started any server (so a taken address fails early), and
the tunnel's own loopback listener, bound here. Imported only once the servers are spawned."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import uvicorn
import uvicorn.server

from reconciler.platform.fsutil import atomic_write
from reconciler.settings import TUNNEL_URL_FILE, SettingsError
from webview.app import create_app
from webview.infra import doors
from webview.infra.gateway import checked
from webview.infra.page import Page

log = logging.getLogger("gateway")


class _DatedState(uvicorn.server.ServerState):
    """uvicorn's shared state, whose default headers carry a Date made when a response asks
    for them (at most once a second), instead of a timer that refreshes it every second."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__()
        self._config = config
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        now = int(time.time())
        if now != self._second:
            self._second = now
            date = [(b"date", formatdate(now, usegmt=True).encode())] if self._config.date_header else []
            self._headers = date + self._config.encoded_headers
        return self._headers

    @default_headers.setter
    def default_headers(self, value: list[tuple[bytes, bytes]]) -> None:
        pass  # uvicorn's own tick and start-up set it; the getter above is always current


class WebServer(uvicorn.Server):
    """uvicorn on our loop; the daemon owns the signal handlers, not uvicorn. Its main loop
    sleeps until `stop()`: uvicorn's own wakes ten times a second to look at `should_exit` and
    to refresh the Date header, which here is made when a response is (_DatedState)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.server_state = _DatedState(config)
        self._exit = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._exit.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        await self._exit.wait()


class Doors(WebServer):
    """The local door (this server) and the tunnel door (a second server on the same app),
    started and stopped together: the daemon sees one server."""

    def __init__(self, config: uvicorn.Config, tunnel: WebServer | None, tunnel_sock: socket.socket | None,
                 url_file: Path) -> None:
        super().__init__(config)
        self.tunnel, self.tunnel_sock, self.url_file = tunnel, tunnel_sock, url_file

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.tunnel is None or self.tunnel_sock is None:
            await super().serve(sockets=sockets)
            return
        atomic_write(self.url_file, tunnel_url(self.tunnel_sock) + "\n")
        try:
            await asyncio.gather(super().serve(sockets=sockets), self.tunnel.serve(sockets=[self.tunnel_sock]))
        finally:
            self.url_file.unlink(missing_ok=True)

    def stop(self) -> None:
        super().stop()
        if self.tunnel is not None:
            self.tunnel.stop()


def tunnel_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind_tunnel_door(host: str, port: int) -> socket.socket:
    if not ipaddress.ip_address(host).is_loopback:
        raise OSError(f"the tunnel door must be a loopback address, not {host}")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def build(daemon: object) -> WebServer:
    """The server for the page and the local API at the local door, with the tunnel door
    beside it; `serve(sockets=[...])` runs both, the local one on the socket the daemon bound.
    `daemon` is checked first for every door the page uses (webview.infra.gateway)."""
    page = Page.open(checked(daemon))
    app = create_app(page)
    # proxy_headers off at both doors: the client address is the peer's (or, at the tunnel door only,
    # Cf-Connecting-Ip: webview.infra.doors.client_ip), never X-Forwarded-For
    config = uvicorn.Config(doors.Door(app, doors.LOCAL), log_level="warning", access_log=False, lifespan="off",
                            proxy_headers=False)
    tunnel, sock = None, None
    try:
        host, port = page.gateway.settings.tunnel_host_port
        sock = _bind_tunnel_door(host, port)
        tunnel = WebServer(uvicorn.Config(doors.Door(app, doors.TUNNEL), log_level="warning", access_log=False,
                                          lifespan="off", proxy_headers=False))
        page.tunnel_url = tunnel_url(sock)
    except (OSError, ValueError, SettingsError) as exc:
        print(f"omen-gateway: the page cannot be reached through the tunnel: its door did not open ({exc})",
              flush=True)
    return Doors(config, tunnel, sock, page.gateway.settings.data_dir / TUNNEL_URL_FILE)
