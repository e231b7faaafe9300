"""A local stand-in for GitHub's releases of cloudflare/cloudflared, on 127.0.0.1.

It answers ``GET /repos/cloudflare/cloudflared/releases/latest`` as GitHub's REST API does
(``tag_name``, ``body``, ``assets[]`` with ``name``, ``browser_download_url``, ``size`` and
``digest`` = ``sha256:...``; 404 ``{"message": "Not Found"}`` before the first release), and
serves the assets. Each release's notes end the way Cloudflare's release script writes them
(cloudflared ``github_message.py``)::

    ### SHA256 Checksums:
    ```
    cloudflared-linux-amd64: <sha256>
    ```

where a ``.tgz``'s checksum is of the ``cloudflared`` inside it (``github_release.py``).
Downloads can be broken on purpose: ``"500"`` (an error answer), ``"truncate"`` (half the
bytes, the connection closed), ``"tamper"`` (other bytes than the published checksum's).

The assets are the test's stand-in for cloudflared (`fake_cloudflared.py`), reporting the
release's version in ``--version``.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LATEST = "/repos/cloudflare/cloudflared/releases/latest"


def fake_binary(version: str, broken: bool = False) -> bytes:
    """The fake cloudflared as a release asset: an executable script saying `version`;
    `broken`: a build that answers --version but exits at once when it should run."""
    text = (HERE / "fake_cloudflared.py").read_text()
    text = text.replace('(beside("version") or ["2026.8.2"])[0]', f'(beside("version") or [{version!r}])[0]')
    if broken:
        text = text.replace("def run(opts: dict[str, str]) -> int:\n",
                            "def run(opts: dict[str, str]) -> int:\n    log('ERR', 'failed to start: a broken build')\n"
                            "    return 1\n", 1)
    return f"#!{sys.executable}\n{text}".encode()


def tgz(binary: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        info = tarfile.TarInfo("cloudflared")
        info.size, info.mode = len(binary), 0o755
        archive.addfile(info, io.BytesIO(binary))
    return buf.getvalue()


class FakeReleases:
    def __init__(self) -> None:
        self.release: dict[str, Any] | None = None
        self.files: dict[str, bytes] = {}  # url path -> bytes
        self.broken: dict[str, str] = {}  # asset name -> "500" | "truncate" | "tamper"
        self.downloads: list[str] = []  # asset names asked for
        self.checks = 0  # answers to "latest"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == LATEST:
                    fake.checks += 1
                    if fake.release is None:
                        return self.send(404, json.dumps({"message": "Not Found"}).encode(), "application/json")
                    return self.send(200, json.dumps(fake.release).encode(), "application/json")
                data = fake.files.get(self.path)
                if data is None:
                    return self.send(404, b"Not Found", "text/plain")
                name = self.path.rsplit("/", 1)[1]
                fake.downloads.append(name)
                mode = fake.broken.get(name)
                if mode == "500":
                    return self.send(500, b"Internal Server Error", "text/plain")
                if mode == "tamper":
                    data = data.replace(b"fake cloudflared", b"evil cloudflared", 1)  # the same size
                if mode == "truncate":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send(200, data, "application/octet-stream")

            def send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.base + LATEST
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeReleases:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def publish(self, version: str, names: list[str], checksums: dict[str, str] | None = None,
                digest: bool = True, broken: bool = False) -> None:
        """Release `version` with an asset per name (each the fake cloudflared of that version;
        a .tgz holds it), the notes' checksum block (correct unless `checksums` says otherwise)."""
        binary = fake_binary(version, broken)
        assets, lines = [], []
        for name in names:
            data = tgz(binary) if name.endswith(".tgz") else binary
            path = f"/cloudflare/cloudflared/releases/download/{version}/{name}"
            self.files[path] = data
            published = hashlib.sha256(binary).hexdigest()  # a .tgz: what it holds
            lines.append(f"{name}: {(checksums or {}).get(name, published)}")
            asset: dict[str, Any] = {"name": name, "browser_download_url": self.base + path, "size": len(data),
                                     "content_type": "application/octet-stream"}
            asset["digest"] = f"sha256:{hashlib.sha256(data).hexdigest()}" if digest else None
            assets.append(asset)
        body = f"## {version}\n\n- Fixes.\n\n### SHA256 Checksums:\n```\n" + "\n".join(lines) + "\n```"
        self.release = {"tag_name": version, "name": version, "body": body, "assets": assets,
                        "html_url": f"https://github.com/cloudflare/cloudflared/releases/tag/{version}"}
