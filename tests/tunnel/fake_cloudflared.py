"""A stand-in for `cloudflared tunnel --config FILE --metrics HOST:PORT run`, for tests.

There is no real cloudflared (and no internet) where the tests run: this program stands in
for the edge connection. It reads the config file (and exits 1 when it is missing, like
cloudflared), serves /ready ({"status":200,"readyConnections":1}), /healthcheck and /config
on the metrics address, and exits 0 on SIGTERM. A file FILE.fake next to the config steers it:
"not-ready" makes /ready answer 503 with readyConnections 0; "crash" makes it exit 1.
Each start appends "PID HASH-OF-CONFIG" to FILE.starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main(argv: list[str]) -> int:
    if argv[:1] != ["tunnel"] or argv[-1:] != ["run"]:
        print(f"fake cloudflared: usage: tunnel --config FILE --metrics ADDR run (got {argv})", file=sys.stderr)
        return 2
    opts = dict(zip(argv[1:-1:2], argv[2:-1:2]))
    config = Path(opts["--config"])
    host, _, port = opts["--metrics"].rpartition(":")
    try:
        text = config.read_text()
    except OSError as exc:
        print(f"fake cloudflared: cannot read {config}: {exc}", file=sys.stderr)
        return 1
    control = config.with_name(config.name + ".fake")
    with open(config.with_name(config.name + ".starts"), "a") as fh:
        fh.write(f"{os.getpid()} {hashlib.sha256(text.encode()).hexdigest()[:16]}\n")

    def mode() -> str:
        try:
            return control.read_text().strip()
        except OSError:
            return ""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if mode() == "crash":
                os._exit(1)
            if self.path == "/ready":
                ready = mode() != "not-ready"
                code = 200 if ready else 503
                body = json.dumps({"status": code, "readyConnections": 1 if ready else 0,
                                   "connectorId": f"fake-{os.getpid()}"})
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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"fake cloudflared: serving metrics on {host}:{port} for {config}", flush=True)
    while not stop.wait(0.05):
        if mode() == "crash":
            return 1
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
