"""A stubborn child for bench/vs_peers.py: it ignores the polite stop signals (TERM, INT,
HUP), forks a grandchild that ignores them too, then listens on PORT so a benchmark can see
it is up. Writes "CHILD_PID GRANDCHILD_PID" to PIDFILE once both run.

    python bench/stubborn.py PORT PIDFILE
"""

import os
import signal
import socket
import sys
import time


def main() -> None:
    port, pidfile = int(sys.argv[1]), sys.argv[2]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    grandchild = os.fork()
    if grandchild == 0:  # the grandchild: same process group, does nothing, outlives polite asks
        while True:
            time.sleep(3600)
    tmp = f"{pidfile}.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()} {grandchild}\n")
    os.replace(tmp, pidfile)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        conn.close()


if __name__ == "__main__":
    main()
