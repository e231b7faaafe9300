"""A pre-fork server: the parent binds 127.0.0.1:PORT (argv[1]) and starts two worker
processes that serve HTTP on the inherited socket (each answers GET with its own pid);
then the parent just waits. Kill -9 the parent and the workers live on under init,
serving on the port, unless someone ends the tree.

Writes {"parent": pid, "workers": [pid, pid]} to PIDFILE (argv[2]) once both serve.

On Windows, which passes no descriptors to a child, each worker gets the socket the Windows way:
socket.share(its pid), the bytes sent on its stdin, socket.fromshare in the worker."""

import json
import os
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if sys.argv[1] == "--worker":
    server = HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    if sys.platform == "win32":
        server.socket = socket.fromshare(sys.stdin.buffer.read())
    else:
        server.socket = socket.socket(fileno=int(sys.argv[2]))
    print(f"worker {os.getpid()} serving", flush=True)
    server.serve_forever()
else:
    port, pidfile = int(sys.argv[1]), Path(sys.argv[2])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    if sys.platform == "win32":
        workers = [subprocess.Popen([sys.executable, __file__, "--worker", "shared"], stdin=subprocess.PIPE)
                   for _ in range(2)]
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(sock.share(worker.pid))
            worker.stdin.close()
    else:
        workers = [subprocess.Popen([sys.executable, __file__, "--worker", str(sock.fileno())],
                                    pass_fds=[sock.fileno()]) for _ in range(2)]
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(json.dumps({"parent": os.getpid(), "workers": [w.pid for w in workers]}))
    os.replace(tmp, pidfile)
    print(f"prefork parent {os.getpid()} on {port}", flush=True)
    while True:
        time.sleep(1)
