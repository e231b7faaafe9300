"""A local stand-in for the Cloudflare v4 API (zones and dns_records), on 127.0.0.1, speaking
the same JSON envelope ({"success", "errors", "messages", "result", "result_info"}) and error
codes (10000 authentication, 81053/81057 record exists, 1003 A/AAAA/CNAME clash)."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/client/v4"


class FakeCloudflare:
    def __init__(self, token: str = "tok789") -> None:
        self.token = token
        self.zones: dict[str, str] = {}  # zone id -> name
        self.records: dict[str, dict[str, Any]] = {}  # record id -> record (with "zone_id")
        self.calls: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, result: Any = None, errors: list[dict[str, Any]] | None = None) -> None:
                body = {"success": not errors, "errors": errors or [], "messages": [], "result": result}
                if isinstance(result, list):
                    body["result_info"] = {"count": len(result), "page": 1, "per_page": 100,
                                           "total_count": len(result)}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                fake.calls.append((method, url.path))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._send(403, None, [{"code": 10000, "message": "Authentication error"}])
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = url.path.removeprefix(PREFIX).strip("/").split("/")
                status, result, errors = fake.route(method, parts, query, body)
                self._send(status, result, errors)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeCloudflare:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def add_zone(self, name: str) -> str:
        zone_id = uuid.uuid4().hex
        self.zones[zone_id] = name
        return zone_id

    def add_record(self, zone_id: str, type_: str, name: str, content: str, proxied: bool = False) -> str:
        rid = uuid.uuid4().hex
        self.records[rid] = {"id": rid, "zone_id": zone_id, "type": type_, "name": name, "content": content,
                             "proxied": proxied, "proxiable": True, "ttl": 1, "settings": {}, "meta": {},
                             "comment": None, "tags": [], "created_on": "2026-11-24T10:00:00Z",
                             "modified_on": "2026-11-24T10:00:00Z"}
        return rid

    def route(self, method: str, parts: list[str], query: dict[str, str],
              body: dict[str, Any]) -> tuple[int, Any, list[dict[str, Any]] | None]:
        if parts == ["zones"] and method == "GET":
            return 200, [{"id": z, "name": n, "status": "active"} for z, n in self.zones.items()
                         if "name" not in query or n == query["name"]], None
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            zone = parts[1]
            if zone not in self.zones:
                return 404, None, [{"code": 7003, "message": "Could not route to /zones/x, perhaps your object "
                                                             "identifier is invalid?"}]
            if len(parts) == 3 and method == "GET":
                return 200, [self._public(r) for r in self.records.values() if r["zone_id"] == zone
                             and all(r.get(k) == v for k, v in query.items() if k in ("name", "type"))], None
            if len(parts) == 3 and method == "POST":
                clash = [r for r in self.records.values() if r["zone_id"] == zone and r["name"] == body["name"]]
                if clash:
                    return 400, None, [{"code": 81053, "message": "An A, AAAA, or CNAME record with that host "
                                                                  "already exists."}]
                rid = self.add_record(zone, body["type"], body["name"], body["content"], body.get("proxied", False))
                self.records[rid]["comment"] = body.get("comment")
                return 200, self._public(self.records[rid]), None
            if len(parts) == 4 and method == "PATCH" and parts[3] in self.records:
                self.records[parts[3]].update({k: v for k, v in body.items() if k != "id"})
                return 200, self._public(self.records[parts[3]]), None
        return 404, None, [{"code": 7000, "message": "No route for that URI"}]

    @staticmethod
    def _public(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k != "zone_id"}
