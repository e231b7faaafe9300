"""CPU per `GET /api/servers` through uvicorn's HTTP protocol and the whole app (doors, security
headers, authentication, CSRF guard, routing, the endpoint), in this process, with 100 servers
loaded and a transport that only collects the bytes: no sockets, no client, no event-loop
neighbours. The figure moves far less with other load on the machine than web_load.py's.

    .venv/bin/python bench/web_stack.py                  # uvicorn's default protocol (h11 unless httptools is installed)
    .venv/bin/python bench/web_stack.py --http h11 --requests 2000 --rounds 5
    .venv/bin/python bench/web_stack.py --bare           # the same protocol with a bare app (the floor)

Prints the minimum over the rounds of CPU µs per request (process time)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn
from uvicorn.server import ServerState

from reconciler.core.state import Phase
from reconciler.core.state import ServerState as Running
from reconciler.engine.config import load_dir
from reconciler.engine.runtime import Runtime
from reconciler.host.sampler import Attention, Figures
from webview.app import create_app
from webview.infra.page import Page
from webview.infra import doors

TOKEN = "bench-token"
REQUEST = (b"GET /api/servers HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nAuthorization: Bearer " + TOKEN.encode()
           + b"\r\n\r\n")


class Collect(asyncio.Transport):
    """What the protocol writes, kept; nothing is sent anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8765)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def gateway(base: Path, servers: int) -> Any:
    """What the page reads of a gateway, with `servers` loaded files all running."""
    config, data = base / "gateway.d", base / "data"
    config.mkdir()
    data.mkdir()
    for i in range(servers):
        (config / f"s{i:03d}.toml").write_text(
            f'command = ["python", "tiny_http.py", "{{port}}"]\nport = "auto"\n'
            f'description = "bench server {i}"\ngroup = "g{i % 5}"\ntags = ["bench"]\n')
    rt = Runtime(data, config, put=lambda op: None)
    result = load_dir(config)
    now = time.monotonic()
    for n, name in enumerate(result.specs):
        rt.states[name] = Running(name, phase=Phase.RUNNING, pid=10_000 + n, port=20_000 + n, started_at=now - 60)
    sink = types.SimpleNamespace(unreachable_since=None, db_ok=True, pending=0)
    settings = types.SimpleNamespace(config_dir=config, data_dir=data, tunnel_host_port=("127.0.0.1", 0))
    return types.SimpleNamespace(settings=settings, rt=rt, reconciler=types.SimpleNamespace(result=result),
                                 store=None, sink=sink, url="http://127.0.0.1:8765", token=TOKEN, db_label="none",
                                 figures=Figures(), attention=Attention())


async def bare(scope: Any, receive: Any, send: Any) -> None:
    body = b"x" * 70_000
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"70000")]})
    await send({"type": "http.response.body", "body": body})


async def measure(args: argparse.Namespace, base: Path) -> None:
    app = bare if args.bare else doors.Door(create_app(Page(gateway(base, args.servers), secret=b"k" * 32, box=None, access=None)),  # type: ignore[arg-type]
                                           doors.LOCAL)
    config = uvicorn.Config(app, http=args.http, log_level="warning", access_log=False, lifespan="off",
                            proxy_headers=False)
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Collect()
    protocol.connection_made(transport)

    async def one() -> None:
        transport.out.clear()
        protocol.data_received(REQUEST)
        while len(transport.out) < 2:  # the head, then the body
            await asyncio.sleep(0)

    for _ in range(200):
        await one()
    head = transport.out[0].split(b"\r\n", 1)[0].decode()
    size = sum(map(len, transport.out))
    rounds = []
    for _ in range(args.rounds):
        t0 = time.process_time()
        for _ in range(args.requests):
            await one()
        rounds.append((time.process_time() - t0) / args.requests * 1e6)
    name = type(protocol).__name__
    print(f"{name}{' (bare app)' if args.bare else ''}: {min(rounds):.0f} µs CPU per GET /api/servers"
          f" (min of {args.rounds} x {args.requests}; rounds {', '.join(f'{r:.0f}' for r in rounds)});"
          f" {head}, {size} bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bare", action="store_true", help="a bare app: the protocol's own cost")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="web-stack-"))
    try:
        asyncio.run(measure(args, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
