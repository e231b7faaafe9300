"""The child every benchmark runs, for the gateway and its peers alike: a minimal HTTP server
on the port given as the first argument (or $PORT). Standard library only, quick to start."""

import os
import socket
import sys


def main() -> None:
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    body = b"ok\n"
    reply = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (len(body), body)
    while True:
        conn, _ = srv.accept()
        try:
            conn.settimeout(1.0)
            conn.recv(4096)
            conn.sendall(reply)
        except OSError:
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    main()
