"""A stand-in for Cloudflare's edge on 127.0.0.1, for tests and benchmarks: visitors' requests go
in here and out through the tunnel's connectors (`fake_cloudflared.py`), as on the internet.

Where it matters it behaves like Cloudflare:
- A connector registers once it is connected (the fake cloudflared does, when
  FAKE_CLOUDFLARED_PROXY_EDGE=host:port names this edge) and unregisters when it begins its
  graceful shutdown: from then on it gets no new requests, and finishes the ones it has.
- Each request goes, by its Host header, to the tunnel that hostname routes to (with
  `resolve`: its proxied CNAME `<tunnel-id>.cfargotunnel.com`; without: any connector), and there
  to one of the tunnel's connected connectors in turn (round robin over the replicas); the
  connector applies its own ingress rules (first match, catch-all last).
- No connector connected: 530 `error code: 1033` (Argo Tunnel error). A hostname with no DNS
  route to a tunnel: 530 `error code: 1016`. A connector that drops the request: 502; no answer
  within `timeout`: 524. A connector whose connection is gone (it crashed) is dropped at once and
  the request goes to another one, as the edge notices a closed HTTP/2 connection.
- It adds Cf-Connecting-Ip, Cf-Ray, X-Forwarded-For and X-Forwarded-Proto: https, and answers
  with `Server: cloudflare`.
- Visitors from elsewhere on the internet: a visitor's `Fake-Visitor-Ip` header is its public
  address (an IPv4 or IPv6 address; default: the peer's), and `Fake-Visitor-Proto: http` says
  it came by plain http (Cloudflare then sends X-Forwarded-Proto: http, when the zone does not
  redirect to https itself). Both are removed before the request goes on.

The connectors' door is /cdn-cgi/fake-edge/connectors (POST {"id", "tunnel", "address"}, DELETE
.../ID, GET: the list with how many requests each served); /cdn-cgi/ is Cloudflare's own path.

    python -m tests.tunnel.fake_edge [--port P]      # prints its address, serves until stopped
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ENV = "FAKE_CLOUDFLARED_PROXY_EDGE"  # what the fake cloudflared reads to find this edge
CONTROL = "/cdn-cgi/fake-edge/connectors"
VISITOR_IP, VISITOR_PROTO = "fake-visitor-ip", "fake-visitor-proto"  # a visitor's public address and scheme
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
       "transfer-encoding", "upgrade", "content-length", "host"}


@dataclass
class Connector:
    id: str
    tunnel: str
    host: str
    port: int


def cloudflare_dns(records: Callable[[], Iterable[dict[str, Any]]]) -> Callable[[str], str | None]:
    """A `resolve` for FakeEdge from DNS records (e.g. `lambda: fake_cloudflare.records.values()`):
    the tunnel id a hostname's proxied CNAME to `<id>.cfargotunnel.com` names, else None."""
    def resolve(host: str) -> str | None:
        for rec in list(records()):
            content = str(rec.get("content", ""))
            if (rec.get("type") == "CNAME" and rec.get("name") == host and rec.get("proxied")
                    and content.endswith(".cfargotunnel.com")):
                return content.removesuffix(".cfargotunnel.com")
        return None
    return resolve


class FakeEdge:
    def __init__(self, resolve: Callable[[str], str | None] | None = None, port: int = 0,
                 timeout: float = 100.0) -> None:
        self.resolve, self.timeout = resolve, timeout
        self.connectors: dict[str, Connector] = {}  # connected now, in the order they came
        self.served: Counter[str] = Counter()  # connector id -> requests it answered
        self.history: list[tuple[str, str]] = []  # ("register" | "unregister" | "gone", connector id)
        self._lock = threading.Lock()
        self._turn = 0
        edge = self

        class Handler(BaseHTTPRequestHandler):
            server_version, sys_version = "cloudflare", ""

            def handle_any(self) -> None:
                if self.path.startswith(CONTROL):
                    return self.control()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status, headers, data = edge.forward(self.command, self.path, self.headers.items(), body,
                                                     self.client_address[0])
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def control(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                got = json.loads(self.rfile.read(length)) if length else {}
                if self.command == "POST":
                    host, _, port = str(got["address"]).rpartition(":")
                    edge.register(Connector(str(got["id"]), str(got.get("tunnel") or ""), host, int(port)))
                    out: Any = {"ok": True}
                elif self.command == "DELETE":
                    edge.unregister(self.path.removeprefix(CONTROL).strip("/"), "unregister")
                    out = {"ok": True}
                else:
                    with edge._lock:
                        out = [{"id": c.id, "tunnel": c.tunnel, "address": f"{c.host}:{c.port}",
                                "served": edge.served[c.id]} for c in edge.connectors.values()]
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 128
        self.port = int(self.server.server_address[1])
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self._thread: threading.Thread | None = None

    # --- life ---------------------------------------------------------------------------
    def start(self) -> FakeEdge:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeEdge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the connectors' side -----------------------------------------------------------
    def register(self, conn: Connector) -> None:
        with self._lock:
            self.connectors[conn.id] = conn
            self.history.append(("register", conn.id))

    def unregister(self, cid: str, why: str) -> None:
        with self._lock:
            if self.connectors.pop(cid, None) is not None:
                self.history.append((why, cid))

    def _pick(self, tunnel: str | None, tried: set[str]) -> Connector | None:
        with self._lock:
            pool = [c for c in self.connectors.values()
                    if (tunnel is None or c.tunnel == tunnel) and c.id not in tried]
            if not pool:
                return None
            self._turn += 1
            return pool[self._turn % len(pool)]

    # --- the visitors' side -------------------------------------------------------------
    def forward(self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes | None,
                client_ip: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """One visitor's request through the tunnel: (status, headers, body)."""
        given = list(headers)
        host = next((v for k, v in given if k.lower() == "host"), "")
        name = host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
        tunnel = None
        if self.resolve is not None:
            tunnel = self.resolve(name)
            if tunnel is None:
                return _error(530, 1016)
        client_ip = next((v for k, v in given if k.lower() == VISITOR_IP), client_ip)
        proto = next((v for k, v in given if k.lower() == VISITOR_PROTO), "https")
        out = [(k, v) for k, v in given if k.lower() not in HOP and not k.lower().startswith(("cf-", "fake-visitor-"))]
        forwarded = next((v for k, v in given if k.lower() == "x-forwarded-for"), "")
        out = [(k, v) for k, v in out if k.lower() not in ("x-forwarded-for", "x-forwarded-proto")]
        out += [("Host", host), ("Cf-Connecting-Ip", client_ip), ("Cf-Ray", f"{secrets.token_hex(8)}-LHR"),
                ("X-Forwarded-For", f"{forwarded}, {client_ip}" if forwarded else client_ip),
                ("X-Forwarded-Proto", proto)]
        tried: set[str] = set()
        while True:
            conn = self._pick(tunnel, tried)
            if conn is None:
                return _error(530, 1033)
            tried.add(conn.id)
            link = http.client.HTTPConnection(conn.host, conn.port, timeout=self.timeout)
            try:
                try:
                    link.connect()
                except OSError:  # its connection is gone: the edge knows, and uses another one
                    self.unregister(conn.id, "gone")
                    continue
                try:
                    link.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                    for key, value in out:
                        link.putheader(key, value)
                    if body is not None:
                        link.putheader("Content-Length", str(len(body)))
                    link.endheaders(body)
                    reply = link.getresponse()
                    data = reply.read()
                except TimeoutError:
                    return _error(524, 524)
                except (OSError, http.client.HTTPException):
                    return _error(502, 502)
            finally:
                link.close()
            with self._lock:
                self.served[conn.id] += 1
            return reply.status, [(k, v) for k, v in reply.getheaders() if k.lower() not in HOP
                                  and k.lower() not in ("server", "date")], data

    def get(self, host: str, path: str = "/", timeout: float = 30.0) -> tuple[int, bytes]:
        """A visitor's GET of https://HOST/PATH, through this edge: (status, body)."""
        link = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            link.request("GET", path, headers={"Host": host})
            reply = link.getresponse()
            return reply.status, reply.read()
        finally:
            link.close()


def _error(status: int, code: int) -> tuple[int, list[tuple[str, str]], bytes]:
    """Cloudflare's answer to a client that does not ask for HTML."""
    return status, [("Content-Type", "text/plain; charset=UTF-8")], f"error code: {code}".encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    edge = FakeEdge(port=args.port)
    print(f"fake edge on {edge.address} (set {ENV}={edge.address} for the fake cloudflared)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        edge.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        edge.server.server_close()


if __name__ == "__main__":
    main()
