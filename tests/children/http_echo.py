"""Serve HTTP on 127.0.0.1:PORT (argv[1], else $PORT).

GET /health answers $HTTP_ECHO_STATUS (default 200); GET /slow waits $HTTP_ECHO_DELAY
seconds (default 5) first; GET /redirect answers 302; any other path answers 200 with
the path and PORT as JSON.
Writes one line to stdout and one to stderr at start."""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self.answer(int(os.environ.get("HTTP_ECHO_STATUS", "200")), b"health\n")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(float(os.environ.get("HTTP_ECHO_DELAY", "5")))
            self.answer(200, b"slow\n")
        else:
            body = json.dumps({"path": self.path, "PORT": os.environ.get("PORT")}).encode()
            self.answer(200, body)

    def answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client went away (a timed-out health check)

    def log_message(self, format: str, *args: object) -> None:
        pass


port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])
server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print(f"http_echo listening on {port}", flush=True)
print(f"http_echo stderr line pid {os.getpid()}", file=sys.stderr, flush=True)
server.serve_forever()
