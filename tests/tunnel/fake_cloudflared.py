"""A stand-in for cloudflared, for tests: `tunnel --config FILE ingress validate` and
`tunnel --config FILE --metrics HOST:PORT [--grace-period D] run`.

There is no real cloudflared (and no internet) where the tests run. Where it matters, this
behaves like cloudflared 2026.8.2 (see shared/notes/cloudflared-real.md):
- `ingress validate`: "Validating rules from FILE", then "OK" (exit 0); a refused config:
  "Validation failed: ..." on stderr, exit 1; an unknown originRequest key: a "Warning: ..."
  and exit 0 without "OK". Besides the real checks it knows (the YAML, at least one rule, the
  catch-all last, unknown keys), a file `refuse` next to this executable lists hostnames it
  refuses ("Rule #N ..."), standing in for what only the real one refuses ("ALL": every file).
- `run`: the same validation first (exit 1 before the metrics answer); a credentials file
  that does not exist: exit 1; then metrics on HOST:PORT (/ready, /healthcheck, /config).
  The edge: when FAKE_CLOUDFLARED_EDGE (host:port) is set and a TCP connect to it fails,
  /ready is 503 and it exits 1 about 0.7 s after start (the real one's SRV lookup failure).
  SIGTERM: exit 0 at once when not connected; once connected it drains for its grace period
  (--grace-period, else TUNNEL_GRACE_PERIOD, else 30s), like the real one with QUIC.
- Proxying: when FAKE_CLOUDFLARED_PROXY_EDGE (host:port of `fake_edge.py`) is set, it serves
  visitors' requests: it registers with that edge once connected (FAKE_CLOUDFLARED_CONNECT_DELAY
  seconds after start, default 0: a real one needs round trips to the edge), and only then is
  /ready 200 (an edge that does not take it: exit 1), unregisters when its graceful shutdown begins
  (no new requests; the ones under way finish during the grace period) and while "not-ready",
  and forwards each request by its --config ingress rules (as read at start): the first rule
  whose hostname (exact, `*.suffix`, or none) and path (a regex searched in the URL path) match;
  `http_status:N` answers N; `http(s)://...` is proxied with the Host header kept (or
  originRequest.httpHostHeader); an origin that cannot be reached: 502, like cloudflared.
A file FILE.fake next to the config steers a running one: "not-ready" makes /ready 503;
"crash" makes it exit 1. Each start appends "PID HASH-OF-CONFIG METRICS-PORT" to FILE.starts (PID: the
program the gateway started, the shebang.exe in front of it on Windows).
Also like the real one: `--version` prints "cloudflared version V (built ...)" (V from a file
`version` next to this executable, else 2026.8.2); a service listed in a file `unstartable` next
to it cannot be started: `run` prints "Error starting local service URL: ..." and exits 1 before
the metrics answer (as cloudflared does when an origin's caPool cannot be read); a second SIGTERM
during the graceful shutdown ends it at once (cloudflared stops listening after the first). A
line "HOSTNAME yaml" in `refuse` makes validation fail with a two-line YAML decoding error at
that rule's first originRequest key (its service when it has none), as yaml.v3 words it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml

PID = int(os.environ.get("SHEBANG_PID") or os.getpid())  # the pid the gateway started (Windows: shebang.exe)

ORIGIN_KEYS = {"connectTimeout", "tlsTimeout", "tcpKeepAlive", "noHappyEyeballs", "keepAliveConnections",
               "keepAliveTimeout", "httpHostHeader", "originServerName", "matchSNItoHost", "caPool", "noTLSVerify",
               "disableChunkedEncoding", "bastionMode", "proxyAddress", "proxyPort", "proxyType", "ipRules",
               "http2Origin", "access"}
PROXY_EDGE = "FAKE_CLOUDFLARED_PROXY_EDGE"
EDGE_DOOR = "/cdn-cgi/fake-edge/connectors"
CONNECT_DELAY = "FAKE_CLOUDFLARED_CONNECT_DELAY"  # seconds from start until it registers (default 0)
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
       "transfer-encoding", "upgrade", "content-length"}
SRV_ERROR = ("Could not lookup srv records on _v2-origintunneld._tcp.argotunnel.com: lookup "
             "_v2-origintunneld._tcp.argotunnel.com: network is unreachable")


def log(level: str, text: str) -> None:
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {level} {text}", file=sys.stderr, flush=True)


def beside(name: str) -> list[str]:
    """The lines of a steering file next to this executable."""
    path = Path(sys.argv[0]).resolve().with_name(name)
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def refused_hostnames() -> set[str]:
    return {line for line in beside("refuse") if " " not in line}


def yaml_refused(config: Path) -> str | None:
    """The two-line YAML error for a rule listed as "HOSTNAME yaml" in `refuse`."""
    hosts = {line.split()[0] for line in beside("refuse") if line.endswith(" yaml")}
    if not hosts:
        return None
    root = yaml.compose(config.read_text())
    ingress = next((v for k, v in root.value if k.value == "ingress"), None) if root is not None else None
    for rule in ingress.value if ingress is not None else []:
        fields = {k.value: v for k, v in rule.value}
        if fields.get("hostname") is None or fields["hostname"].value not in hosts:
            continue
        origin = fields.get("originRequest")
        node = origin.value[0][1] if origin is not None and origin.value else fields["service"]
        return (f"error parsing YAML in config file at {config}: yaml: unmarshal errors:\n"
                f"  line {node.start_mark.line + 1}: cannot unmarshal !!str `{node.value}` into time.Duration")
    return None


def validate(config: Path) -> tuple[bool, str]:
    """(accepted, message): the message is a refusal or a Warning."""
    try:
        data = yaml.safe_load(config.read_text())
    except OSError as exc:
        return False, f"error reading {config}: {exc}"
    except yaml.YAMLError as exc:
        return False, f"error parsing YAML in config file at {config}: yaml: {exc}"
    rules = (data or {}).get("ingress") or []
    if not rules:
        return False, "Validation failed: The config file doesn't contain any ingress rules"
    last = rules[-1]
    if last.get("hostname", "") not in ("", "*") or last.get("path"):
        return False, ("Validation failed: The last ingress rule must match all URLs (i.e. it should not have a "
                       "hostname or path filter)")
    broken = yaml_refused(config)
    if broken:
        return False, broken
    refuse = refused_hostnames()
    if "ALL" in refuse:
        return False, "Validation failed: The config file doesn't contain any ingress rules"
    for i, rule in enumerate(rules, 1):
        if rule.get("hostname") in refuse:
            return False, (f"Validation failed: Rule #{i} has an invalid regex: error parsing regexp: invalid "
                           "escape sequence: `\\C`")
    for origin in [(data or {}).get("originRequest") or {}, *(r.get("originRequest") or {} for r in rules)]:
        for key in origin:
            if key not in ORIGIN_KEYS:
                return False, ("Warning: unused keys detected in your config file. Here is a list of unused keys:\n"
                               f"line 1: field {key} not found in type config.OriginRequestConfig")
    return True, ""


def go_seconds(text: str) -> float:
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", text))


def edge_reachable() -> bool:
    edge = os.environ.get("FAKE_CLOUDFLARED_EDGE")
    if not edge:
        return True
    host, _, port = edge.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
        return True
    except OSError:
        return False


def matching_rule(rules: list[dict], host: str, path: str) -> dict:
    """cloudflared's choice: the first rule whose hostname and path match (the last catches all)."""
    for rule in rules:
        name = rule.get("hostname") or ""
        if name.startswith("*.") and not host.endswith(name[1:]):
            continue
        if name not in ("", "*") and not name.startswith("*.") and name != host:
            continue
        if rule.get("path") and not re.search(rule["path"], path):
            continue
        return rule
    return rules[-1]


def proxy_handler(data: dict) -> type[BaseHTTPRequestHandler]:
    rules = data.get("ingress") or []
    defaults = data.get("originRequest") or {}

    class Proxy(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            host = self.headers.get("Host", "")
            host = host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
            rule = matching_rule(rules, host, urlsplit(self.path).path)
            service = str(rule.get("service", ""))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if service.startswith("http_status:"):
                return self.answer(int(service.split(":", 1)[1]), [], b"")
            if not service.startswith(("http://", "https://")):
                return self.answer(502, [], f"the fake cloudflared does not serve {service}\n".encode())
            origin = {**defaults, **(rule.get("originRequest") or {})}
            url = urlsplit(service)
            kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            link = kind(url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80),
                        timeout=go_seconds(str(origin.get("connectTimeout") or "30s")) or 30.0)
            try:
                link.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in self.headers.items():
                    if key.lower() not in HOP and key.lower() != "host":
                        link.putheader(key, value)
                link.putheader("Host", str(origin.get("httpHostHeader") or self.headers.get("Host", "")))
                if body is not None:
                    link.putheader("Content-Length", str(len(body)))
                link.endheaders(body)
                reply = link.getresponse()
                got = reply.read()
            except (OSError, http.client.HTTPException) as exc:
                log("ERR", f'error="Unable to reach the origin service. The service may be down or it may not be '
                    f'responding to traffic from cloudflared: {exc}" originService={service}')
                return self.answer(502, [], b"")
            finally:
                link.close()
            self.answer(reply.status, [(k, v) for k, v in reply.getheaders() if k.lower() not in HOP], got)

        def answer(self, code: int, headers: list[tuple[str, str]], body: bytes) -> None:
            try:
                self.send_response_only(code)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            except OSError:
                pass  # the edge went away

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

        def log_message(self, *args: object) -> None:
            pass

    return Proxy


def edge_call(method: str, path: str, body: dict | None = None) -> bool:
    """A call to the fake edge's door for connectors; whether it answered 200."""
    host, _, port = os.environ[PROXY_EDGE].rpartition(":")
    link = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        link.request(method, EDGE_DOOR + path, json.dumps(body) if body is not None else None,
                     {"Content-Type": "application/json"})
        return link.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        link.close()


def run(opts: dict[str, str]) -> int:
    config = Path(opts["--config"])
    ok, message = validate(config)
    if not ok or message:
        print(message, file=sys.stderr)
        return 1
    text = config.read_text()
    data = yaml.safe_load(text)
    creds = data.get("credentials-file")
    if creds and not Path(creds).expanduser().is_file():
        print(f"Tunnel credentials file '{creds}' doesn't exist or is not a file", file=sys.stderr)
        return 1
    unstartable = set(beside("unstartable"))
    for rule in data.get("ingress") or []:
        if rule.get("service") in unstartable:
            log("ERR", f'Error starting local service {rule["service"]}: Error loading cert pool: unable to read the '
                f'file ca.pem for --origin-ca-pool: open ca.pem: no such file or directory')
            return 1
    grace = go_seconds(opts.get("--grace-period") or os.environ.get("TUNNEL_GRACE_PERIOD") or "30s")
    host, _, port = opts["--metrics"].rpartition(":")
    control = config.with_name(config.name + ".fake")
    with open(config.with_name(config.name + ".starts"), "a") as fh:  # the pid the gateway started, and where /ready is
        fh.write(f"{PID} {hashlib.sha256(text.encode()).hexdigest()[:16]} {port}\n")
    connected = edge_reachable()

    def mode() -> str:
        try:
            return control.read_text().strip()
        except OSError:
            return ""

    stop = threading.Event()

    def first_signal(*_: object) -> None:  # like cloudflared: the next one ends it at once
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        stop.set()

    signal.signal(signal.SIGTERM, first_signal)
    signal.signal(signal.SIGINT, first_signal)  # Windows: the gateway's graceful stop is Ctrl-C
    proxy, me, door = None, f"fake-{PID}", {}
    link = {"registered": False}  # with the edge: it sends this connector requests
    if os.environ.get(PROXY_EDGE) and connected:
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), proxy_handler(data))
        proxy.daemon_threads = True
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        door = {"id": me, "tunnel": str(data.get("tunnel") or ""), "address": f"127.0.0.1:{proxy.server_address[1]}"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if mode() == "crash":
                os._exit(1)
            if self.path == "/ready":
                ready = connected and mode() != "not-ready" and (proxy is None or link["registered"])
                code = 200 if ready else 503
                body = json.dumps({"status": code, "readyConnections": 1 if ready else 0,
                                   "connectorId": f"fake-{PID}"})
            elif self.path == "/config":
                code, body = 200, json.dumps({"version": -1, "config": {"text": text}})
            elif self.path == "/healthcheck":
                code, body = 200, "OK\n"
            else:
                code, body = 404, "not found\n"
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("INF", f"Starting metrics server on {host}:{port}/metrics")
    started = time.monotonic()
    connect_at = started + float(os.environ.get(CONNECT_DELAY) or 0)
    first = True
    while not stop.wait(0.05):
        if mode() == "crash":
            log("ERR", "fake crash")
            return 1
        if not connected and time.monotonic() - started >= 0.7:
            log("ERR", SRV_ERROR)
            return 1
        if proxy is not None and time.monotonic() >= connect_at:
            if mode() != "not-ready" and not link["registered"]:  # connects (again, after a drop)
                link["registered"] = edge_call("POST", "", door)
                if first and not link["registered"]:
                    log("ERR", f"the edge at {os.environ[PROXY_EDGE]} did not take the connection")
                    return 1
                first = False
                if link["registered"]:
                    log("INF", f"Registered tunnel connection connIndex=0 connection={me}")
            elif mode() == "not-ready" and link["registered"]:  # its connections drop
                link["registered"] = not edge_call("DELETE", "/" + me)
    log("INF", "Initiating graceful shutdown due to signal terminated ...")
    draining = link["registered"] if proxy is not None else connected and mode() != "not-ready"
    if link["registered"]:
        edge_call("DELETE", "/" + me)  # the edge sends it no new requests
    if draining:
        time.sleep(grace)  # waits for in-flight requests up to the grace period
    server.shutdown()
    if proxy is not None:
        proxy.shutdown()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--version"]:
        version = (beside("version") or ["2026.8.2"])[0]
        print(f"cloudflared version {version} (built 2026-08-20-1200 UTC)")
        return 0
    if argv[:1] != ["tunnel"] or argv[1:2] != ["--config"]:
        print(f"Incorrect Usage: flag provided but not defined (got {argv})", file=sys.stderr)
        return 0  # like the real one: a usage error exits 0
    if argv[3:] == ["ingress", "validate"]:
        print(f"Validating rules from {argv[2]}", flush=True)
        ok, message = validate(Path(argv[2]))
        if message:
            print(message, file=sys.stderr)
        if ok and not message:
            print("OK")
        return 0 if ok else 1
    if argv[-1:] != ["run"]:
        print(f"fake cloudflared: usage: tunnel --config FILE --metrics ADDR run (got {argv})", file=sys.stderr)
        return 2
    return run(dict(zip(argv[1:-1:2], argv[2:-1:2])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
