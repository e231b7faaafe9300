"""Serve HTTP on 127.0.0.1:argv[1]: 200 on the path written in the file $HEALTH_AT (read at each
request, "/health" when it is missing), 404 on any other path. A test "updates the program" by
writing another path there: its check, still on the old path, gets 404 until its file follows."""

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

AT = Path(os.environ["HEALTH_AT"])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        try:
            path = AT.read_text(encoding="utf-8").strip() or "/health"
        except OSError:
            path = "/health"
        code = 200 if self.path == path else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


print(f"moving_health: answering on {sys.argv[1]}", flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
