"""DNS routes against a local fake of the Cloudflare API (tests/tunnel/fake_cloudflare.py), with
the ledger of created records in real PostgreSQL (the `store` fixture)."""

from __future__ import annotations

from reconciler.store import Store
from reconciler.store.dns_records import Ledger
from reconciler.tunnel.dns import CloudflareAPI, sync, target
from tests.fix_db import rows
from tests.tunnel.fake_cloudflare import FakeCloudflare

OLD = "11111111-1111-4111-8111-111111111111"
NEW = "22222222-2222-4222-8222-222222222222"


async def test_create_once_update_on_tunnel_change_leave_foreign_records(store: Store):
    with FakeCloudflare() as cf:
        zone = cf.add_zone("example.com")
        foreign = cf.add_record(zone, "A", "mail.example.com", "192.0.2.1")
        foreign_cname = cf.add_record(zone, "CNAME", "old.example.com", "elsewhere.example.net", proxied=True)
        api = CloudflareAPI(cf.url, cf.token)
        ledger = Ledger(store.pool)
        try:
            hosts = ["blog.example.com", "*.dev.example.com", "mail.example.com", "old.example.com"]
            first = {o.hostname: o.action for o in await sync(api, ledger, OLD, hosts)}
            assert first == {"blog.example.com": "created", "*.dev.example.com": "created",
                             "mail.example.com": "conflict", "old.example.com": "conflict"}
            made = [r for r in cf.records.values() if r["name"] in ("blog.example.com", "*.dev.example.com")]
            assert all(r["type"] == "CNAME" and r["content"] == target(OLD) and r["proxied"] for r in made)
            assert len(await rows(store, "SELECT record_id FROM tunnel_dns_records")) == 2

            again = await sync(api, ledger, OLD, hosts)  # nothing new: created once
            assert {o.hostname: o.action for o in again}["blog.example.com"] == "unchanged"
            assert sum(1 for m, p in cf.calls if m == "POST") == 2

            moved = {o.hostname: o for o in await sync(api, ledger, NEW, hosts)}  # the tunnel changed
            assert moved["blog.example.com"].action == "updated"
            assert all(r["content"] == target(NEW) for r in made)
            assert "left alone" in moved["mail.example.com"].message
            # foreign records untouched, and nothing was ever deleted
            assert cf.records[foreign]["content"] == "192.0.2.1"
            assert cf.records[foreign_cname]["content"] == "elsewhere.example.net"
            assert not any(m == "DELETE" for m, _ in cf.calls) and len(cf.records) == 4
        finally:
            await api.close()


async def test_api_errors_in_words(store: Store):
    with FakeCloudflare() as cf:
        cf.add_zone("example.com")
        bad = CloudflareAPI(cf.url, "wrong-token")
        nozone = CloudflareAPI(cf.url, cf.token)
        down = CloudflareAPI("http://127.0.0.1:9/client/v4", cf.token, timeout=2)
        try:
            [out] = await sync(bad, Ledger(store.pool), NEW, ["a.example.com"])
            assert out.action == "error"
            assert out.message == ("this token cannot see a.example.com: add the DNS edit permission "
                                   "(Zone → DNS → Edit) for it")
            [out] = await sync(nozone, Ledger(store.pool), NEW, ["a.other.org"])
            assert out.action == "error" and "no zone for a.other.org" in out.message
            [out] = await sync(down, Ledger(store.pool), NEW, ["a.example.com"], zone="example.com")
            assert out.action == "error" and out.message == (
                "cannot reach Cloudflare (127.0.0.1:9): check this laptop's internet connection")
        finally:
            for api in (bad, nozone, down):
                await api.close()


async def test_a_token_that_cannot_edit_dns_is_told_so_and_removed_hostnames_lose_only_our_records(store: Store):
    with FakeCloudflare() as cf:
        zone = cf.add_zone("example.com")
        foreign = cf.add_record(zone, "CNAME", "shop.example.com", "elsewhere.example.net")
        cf.tokens["read-only"] = {"zone", "tunnel"}
        api, weak = CloudflareAPI(cf.url, cf.token), CloudflareAPI(cf.url, "read-only")
        ledger = Ledger(store.pool)
        try:
            cf.zones[zone] = "example.com"
            [out] = await sync(weak, ledger, NEW, ["blog.example.com"], zone="example.com")
            assert out.action == "error" and out.message == (
                "this token cannot edit DNS for example.com: add the DNS edit permission (Zone → DNS → Edit) for it")
            made = await sync(api, ledger, NEW, ["blog.example.com", "api.example.com", "wait.example.com"])
            assert sorted(o.action for o in made) == ["created"] * 3
            # blog's server was deleted, wait's is waiting for its port: only blog's record goes
            gone = await sync(api, ledger, NEW, ["api.example.com"], keep=["wait.example.com", "shop.example.com"])
            assert [(o.hostname, o.action) for o in gone if o.action != "unchanged"] == [("blog.example.com",
                                                                                          "removed")]
            names = {r["name"] for r in cf.records.values()}
            assert names == {"api.example.com", "wait.example.com", "shop.example.com"}
            # a record it did not create is never deleted, even when no server wants its name
            await sync(api, ledger, NEW, [])
            assert set(cf.records) == {foreign}
            assert [m for m, _ in cf.calls].count("DELETE") == 3  # blog, then api and wait
        finally:
            await api.close()
            await weak.close()
