"""The server every fault of bench/fault_run.py runs: an HTTP server on argv[1] whose health
is read from the file FAULT_FILE (so the bench breaks and heals it without a restart): "ok"
answers 200, "500" answers 500, "hang" never answers (one thread: every later check waits too),
"crash" exits with code 3 at once and at every start (a crash loop). CRASH=1 in its environment:
it exits with code 3 at once."""

from __future__ import annotations

import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

if os.environ.get("CRASH") == "1":
    print("fault_child: TOKEN not set, exiting", flush=True)
    sys.exit(3)
MODE = Path(os.environ["FAULT_FILE"])


def mode() -> str:
    try:
        return MODE.read_text(encoding="utf-8").strip()
    except OSError:
        return "ok"


def crash_when_told() -> None:
    """The file says "crash": exit with code 3, now and at every start, until it says otherwise."""
    while True:
        if mode() == "crash":
            print("fault_child: cannot reach its database, exiting", flush=True)
            os._exit(3)
        time.sleep(0.05)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        now = mode()
        if now == "hang":
            time.sleep(3600)
        code = 500 if now == "500" else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"no")

    def log_message(self, *args: object) -> None:
        pass


if mode() == "crash":
    crash_when_told()
threading.Thread(target=crash_when_told, daemon=True).start()
print(f"fault_child: answering on {sys.argv[1]}", flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
