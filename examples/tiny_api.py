"""A tiny JSON API with only the standard library: GET /health and GET /time.

The port comes from $PORT, which the gateway sets from the server file's ``port``."""

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.time()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/health":
            body = {"ok": True, "uptime_s": round(time.time() - STARTED, 1)}
        elif self.path == "/time":
            body = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "greeting": os.environ.get("GREETING", "")}
        else:
            self.send_error(404, "try /health or /time")
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)


def main() -> None:
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"tiny_api listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
