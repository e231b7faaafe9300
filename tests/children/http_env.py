"""Serve HTTP on 127.0.0.1:PORT (argv[1], else $PORT): every request answers 200 with a JSON
object of PORT, the pid and the environment variables named in argv[2:] (so a caller sees which
version answered). $HTTP_ENV_START_DELAY seconds (default 0) pass before it listens: a slow start."""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"PORT": os.environ.get("PORT"), "pid": os.getpid(),
                           **{name: os.environ.get(name) for name in sys.argv[2:]}}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


time.sleep(float(os.environ.get("HTTP_ENV_START_DELAY") or 0))
port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])
server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.request_queue_size = 64
print(f"http_env listening on {port}", flush=True)
server.serve_forever()
