"""A local stand-in for the Cloudflare v4 API on 127.0.0.1, speaking the same JSON envelope
({"success", "errors", "messages", "result", "result_info"}), paging (page, per_page,
result_info.total_pages) and error codes (10000 authentication, 9109 unauthorized to access
requested resource, 81053 record exists, 7003 bad identifier).

What it serves: GET /user/tokens/verify; GET /accounts; GET /zones (?name=, ?account.id=);
GET/POST/PATCH/DELETE /zones/{z}/dns_records; GET/POST /accounts/{a}/cfd_tunnel, GET .../cfd_tunnel/{id}
(with `conns_active_at` / `conns_inactive_at`, set by `connector`) and GET .../cfd_tunnel/{id}/token; GET/POST /accounts/{a}/alerting/v3/policies and POST
.../alerting/v3/destinations/webhooks.

Tokens carry permissions: `tokens = {"tok789": {"zone", "dns", "tunnel", "notify"}}`; a call the
token's permissions do not cover is a 403 with code 9109, as Cloudflare answers it. Listing the
zones needs a zone permission on all the account's zones (Cloudflare's
``com.cloudflare.api.account.zone.list``): without one, 403 naming that permission, as Cloudflare
says it ("Actor 'com.cloudflare.api.token.ID' requires permission '...' to list zones"). A DNS
change without "dns" is refused with 403 before the record is even looked up (so a PATCH of a
record that does not exist is 403 without the permission and 404 with it).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/client/v4"
ALL = frozenset({"zone", "dns", "tunnel", "notify"})  # zone: read zones and records; dns: edit
Reply = tuple[int, Any, "list[dict[str, Any]] | None"]


class FakeCloudflare:
    def __init__(self, token: str = "tok789", per_page_max: int = 50) -> None:
        self.token = token
        self.token_id = uuid.uuid4().hex
        self.tokens: dict[str, set[str]] = {token: set(ALL)}
        self.per_page_max = per_page_max
        self.accounts: dict[str, str] = {}  # account id -> name
        self.zones: dict[str, str] = {}  # zone id -> name
        self.zone_account: dict[str, str] = {}
        self.records: dict[str, dict[str, Any]] = {}  # record id -> record (with "zone_id")
        self.tunnels: dict[str, dict[str, Any]] = {}  # tunnel id -> tunnel (with "account_id", "secret")
        self.policies: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, result: Any = None, errors: list[dict[str, Any]] | None = None,
                      info: dict[str, Any] | None = None) -> None:
                body: dict[str, Any] = {"success": not errors, "errors": errors or [], "messages": [],
                                        "result": result}
                if info is not None:
                    body["result_info"] = info
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                fake.calls.append((method, url.path))
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if token not in fake.tokens:
                    return self._send(403, None, [{"code": 10000, "message": "Authentication error"}])
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = url.path.removeprefix(PREFIX).strip("/").split("/")
                status, result, errors = fake.route(method, parts, query, body, fake.tokens[token])
                if errors is None and isinstance(result, list):  # paged
                    page, per = int(query.get("page", 1)), min(int(query.get("per_page", 20)), fake.per_page_max)
                    total = len(result)
                    result = result[(page - 1) * per:page * per]
                    info = {"page": page, "per_page": per, "count": len(result), "total_count": total,
                            "total_pages": max(1, -(-total // per))}
                    return self._send(status, result, None, info)
                self._send(status, result, errors)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

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

    # --- setting the scene -------------------------------------------------------------------
    def add_account(self, name: str = "Ada's account") -> str:
        account_id = uuid.uuid4().hex
        self.accounts[account_id] = name
        return account_id

    def add_zone(self, name: str, account_id: str | None = None) -> str:
        zone_id = uuid.uuid4().hex
        self.zones[zone_id] = name
        if account_id:
            self.zone_account[zone_id] = account_id
        return zone_id

    def add_record(self, zone_id: str, type_: str, name: str, content: str, proxied: bool = False) -> str:
        rid = uuid.uuid4().hex
        self.records[rid] = {"id": rid, "zone_id": zone_id, "type": type_, "name": name, "content": content,
                             "proxied": proxied, "proxiable": True, "ttl": 1, "settings": {}, "meta": {},
                             "comment": None, "tags": [], "created_on": "2026-11-24T10:00:00Z",
                             "modified_on": "2026-11-24T10:00:00Z"}
        return rid

    def add_tunnel(self, account_id: str, name: str) -> str:
        tid = str(uuid.uuid4())
        self.tunnels[tid] = {"id": tid, "account_id": account_id, "name": name, "config_src": "local",
                             "secret": base64.b64encode(uuid.uuid4().bytes * 2).decode(), "deleted_at": None,
                             "status": "inactive", "created_at": "2026-11-24T10:00:00Z",
                             "conns_active_at": None, "conns_inactive_at": None}
        return tid

    def connector(self, tid: str, up: bool, since: str) -> None:
        """The edge's view of the tunnel's connector, as Cloudflare reports it: when connected,
        `conns_active_at` is set and `conns_inactive_at` null; when not, the other way round."""
        self.tunnels[tid].update(status="healthy" if up else "down", conns_active_at=since if up else None,
                                 conns_inactive_at=None if up else since)

    # --- answering -----------------------------------------------------------------------------
    @staticmethod
    def _denied() -> Reply:
        return 403, None, [{"code": 9109, "message": "Unauthorized to access requested resource"}]

    def route(self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any],
              perms: set[str]) -> Reply:
        if parts == ["user", "tokens", "verify"]:
            return 200, {"id": uuid.uuid4().hex, "status": "active"}, None
        if parts == ["accounts"] and method == "GET":
            return 200, [{"id": a, "name": n, "type": "standard"} for a, n in self.accounts.items()], None
        if parts == ["zones"] and method == "GET":
            if not perms & {"zone", "dns"}:
                return 403, None, [{"code": 9109, "message": f"Actor 'com.cloudflare.api.token.{self.token_id}' "
                                    "requires permission 'com.cloudflare.api.account.zone.list' to list zones"}]
            return 200, [{"id": z, "name": n, "status": "active",
                          "account": {"id": self.zone_account.get(z), "name": self.accounts.get(
                              self.zone_account.get(z, ""))}} for z, n in self.zones.items()
                         if ("name" not in query or n == query["name"])
                         and ("account.id" not in query or self.zone_account.get(z) == query["account.id"])], None
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            return self._dns(method, parts, query, body, perms)
        if len(parts) >= 3 and parts[0] == "accounts" and parts[2] == "cfd_tunnel":
            return self._tunnels(method, parts, query, body, perms)
        if len(parts) >= 3 and parts[0] == "accounts" and parts[2:6] == ["alerting", "v3", "destinations", "webhooks"]:
            if "notify" not in perms:
                return self._denied()
            hook = {"id": uuid.uuid4().hex, "name": body.get("name"), "url": body.get("url")}
            self.webhooks.append(hook)
            return 200, {"id": hook["id"]}, None
        if len(parts) >= 3 and parts[0] == "accounts" and parts[2:5] == ["alerting", "v3", "policies"]:
            if "notify" not in perms:
                return self._denied()
            if method == "POST":
                policy = {"id": uuid.uuid4().hex, **body}
                self.policies.append(policy)
                return 200, {"id": policy["id"]}, None
            return 200, list(self.policies), None
        return 404, None, [{"code": 7000, "message": "No route for that URI"}]

    def _dns(self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any],
             perms: set[str]) -> Reply:
        zone = parts[1]
        if zone not in self.zones:
            return 404, None, [{"code": 7003, "message": "Could not route to /zones/x, perhaps your object "
                                                         "identifier is invalid?"}]
        if "dns" not in perms and not (method == "GET" and "zone" in perms):
            return self._denied()
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
        if len(parts) == 4 and parts[3] in self.records:
            if method == "PATCH":
                self.records[parts[3]].update({k: v for k, v in body.items() if k != "id"})
                return 200, self._public(self.records[parts[3]]), None
            if method == "DELETE":
                del self.records[parts[3]]
                return 200, {"id": parts[3]}, None
        if len(parts) == 4:
            return 404, None, [{"code": 81044, "message": "Record does not exist."}]
        return 404, None, [{"code": 7000, "message": "No route for that URI"}]

    def _tunnels(self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any],
                 perms: set[str]) -> Reply:
        account = parts[1]
        if account not in self.accounts:
            return 404, None, [{"code": 7003, "message": "Could not route, perhaps your object identifier is "
                                                         "invalid?"}]
        if "tunnel" not in perms:
            return self._denied()
        if len(parts) == 3 and method == "GET":
            return 200, [self._tunnel(t) for t in self.tunnels.values() if t["account_id"] == account
                         and ("name" not in query or t["name"] == query["name"])], None
        if len(parts) == 3 and method == "POST":
            if any(t["name"] == body.get("name") and t["account_id"] == account for t in self.tunnels.values()):
                return 409, None, [{"code": 1013, "message": "You already have a tunnel with this name"}]
            secret = base64.b64decode(body["tunnel_secret"])
            if len(secret) < 32:
                return 400, None, [{"code": 1001, "message": "tunnel_secret must be at least 32 bytes"}]
            tid = self.add_tunnel(account, body["name"])
            self.tunnels[tid]["secret"] = body["tunnel_secret"]
            self.tunnels[tid]["config_src"] = body.get("config_src", "local")
            tunnel = self._tunnel(self.tunnels[tid])
            tunnel["credentials_file"] = {"AccountTag": account, "TunnelID": tid, "TunnelName": body["name"],
                                          "TunnelSecret": body["tunnel_secret"]}
            return 200, tunnel, None
        if len(parts) == 4 and method == "GET" and parts[3] in self.tunnels:  # one tunnel, with its connections
            return 200, self._tunnel(self.tunnels[parts[3]]), None
        if len(parts) == 5 and parts[4] == "token" and parts[3] in self.tunnels:
            t = self.tunnels[parts[3]]
            token = {"a": account, "t": t["id"], "s": t["secret"]}
            return 200, base64.b64encode(json.dumps(token).encode()).decode(), None
        return 404, None, [{"code": 7000, "message": "No route for that URI"}]

    @staticmethod
    def _tunnel(t: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in t.items() if k not in ("secret", "account_id")} | {"account_tag": t["account_id"]}

    @staticmethod
    def _public(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k != "zone_id"}
