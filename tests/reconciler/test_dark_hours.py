"""The dark hours, end to end with a real gateway: the time it was off (a clean stop), without
power (everything SIGKILLed at once) or asleep (frozen) is recorded as a `dark` period and
charged to the servers with a public address, not to the local ones; Cloudflare's view of the
tunnel (the local stand-in of its API) adds the minutes the gateway could not see of itself.
Real processes, real PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from reconciler.engine.resume import BEAT, JUMP
from tests.fix_gateway import Gateway
from tests.reconciler.test_loop import wait_until
from tests.reconciler.test_power_loss import cut_power
from tests.tunnel.fake_cloudflare import FakeCloudflare
from tests.tunnel.test_connector import TUNNEL_ID, fake_cloudflared, with_tunnel

HTTP = 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\nport = "auto"\n'
PUBLIC = HTTP + '[domain]\nhostname = "shop.example.com"\n'
CHECKED = '[health]\ntype = "tcp"\ninterval = "1s"\n'  # a beat a second: checks to count before the stop
OFF_FOR = 6.0  # seconds the gateway stays off: past the 5 s below which a gap is not recorded


def darks(gw: Gateway) -> list[dict[str, Any]]:
    return [e for e in gw.events() if e["kind"] == "dark"]


def wait_darks(gw: Gateway, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := darks(gw)) < count:
        assert time.monotonic() < deadline, f"{len(found)} dark periods recorded, not {count}"
        time.sleep(0.1)
    return found


def month_of(gw: Gateway, name: str, causes: tuple[str, ...] = (), timeout: float = 20.0) -> dict[str, Any]:
    """The server's availability once the figures count the dark `causes` (the first rollup is 5 s
    after the start, the next ones a minute apart)."""
    def counted(s: dict[str, Any]) -> bool:
        up = s.get(name, {}).get("uptime_pct", {})
        return up.get("month") is not None and set(causes) <= set(up.get("dark", {}).get("month", {}))

    return gw.wait_for(counted, timeout, f"{name}'s month counting {causes}")[name]["uptime_pct"]


def checks_of(gw: Gateway, name: str) -> int:
    gw.client.events(limit=1)  # the API writes the gateway's queue before it reads
    with psycopg.connect(gw.read_dsn(), options=f"-c search_path={gw.schema}") as conn:
        row = conn.execute("SELECT coalesce(sum(checks), 0) FROM health_minutes WHERE server = %s",
                           (name,)).fetchone()
    return int(row[0]) if row else 0


def test_the_time_the_gateway_was_off_is_charged_to_public_servers_only(gateway: Gateway) -> None:
    gateway.write("shop", PUBLIC + CHECKED)
    gateway.write("local", HTTP + CHECKED)
    gateway.start()
    gateway.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in ("shop", "local")))
    wait_until(lambda: min(checks_of(gateway, "shop"), checks_of(gateway, "local")) >= 2, 20, "checks of both")
    assert gateway.stop() == 0
    stopped = datetime.now(UTC)
    time.sleep(OFF_FOR)
    gateway.start()
    [dark] = wait_darks(gateway)
    detail = dark["detail"]
    assert detail["cause"] == "off" and detail["servers"] == {"shop": 1.0}  # the local one is not charged
    since, until = datetime.fromisoformat(detail["since"]), datetime.fromisoformat(detail["until"])
    assert since <= stopped <= until and OFF_FOR <= detail["seconds"] <= OFF_FOR + 30
    assert "the gateway was off for" in dark["reason"] and "counted as down for shop" in dark["reason"]
    shop = month_of(gateway, "shop", ("off",))
    assert shop["dark"]["month"]["off"] == pytest.approx(detail["seconds"], abs=0.2)
    assert shop["month"] < 100.0 and shop["24h"] < 100.0
    assert shop["down_s"]["month"] >= detail["seconds"] and shop["promise"] == 99.0
    local = month_of(gateway, "local")
    assert local["month"] == 100.0 and local["dark"]["month"] == {}


def test_a_power_cut_is_charged_from_the_last_thing_the_gateway_wrote(own_db_gateway: Gateway) -> None:
    gw = own_db_gateway
    gw.write("shop", PUBLIC)
    gw.start()
    gw.wait_phase("shop", "running")
    gw.events()  # everything so far is in PostgreSQL
    cut_power(gw)
    cut = datetime.now(UTC)
    time.sleep(OFF_FOR)
    gw.start()
    [dark] = wait_darks(gw, timeout=30)
    detail = dark["detail"]
    assert detail["cause"] == "power" and detail["servers"] == {"shop": 10.0}
    since = datetime.fromisoformat(detail["since"])
    assert cut - timedelta(seconds=30) <= since <= cut  # its last check or sample before the cut
    assert "stopped without a clean stop" in dark["reason"]


def test_servers_kept_running_through_a_restart_are_not_charged(gateway: Gateway) -> None:
    gateway.write("shop", PUBLIC)
    gateway.start()
    gateway.wait_phase("shop", "running")
    gateway.events()  # flushes: its state row is in PostgreSQL (what the next gateway adopts by)
    gateway.kill9()  # the gateway alone dies: its servers keep running (a clean stop stops them)
    time.sleep(OFF_FOR)
    gateway.start()
    gateway.wait_phase("shop", "running")
    adopted = [e for e in gateway.events("shop") if e["to_phase"] == "running" and "adopted" in e["reason"]]
    assert adopted, "the server was not adopted"
    time.sleep(2)
    assert darks(gateway) == []  # it answered all along: nothing to charge


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="a freeze is made with SIGSTOP")
def test_the_time_asleep_is_charged_to_public_servers(gateway: Gateway) -> None:
    gateway.write("shop", PUBLIC)
    gateway.write("local", HTTP)
    gateway.start()
    before = gateway.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in ("shop", "local")))
    assert gateway.proc is not None
    pids = [before["shop"]["pid"], before["local"]["pid"]]
    for pid in pids:  # the whole laptop stands still: the gateway and its servers
        os.killpg(pid, signal.SIGSTOP)
    os.kill(gateway.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(JUMP + BEAT + 3)  # longer than any freeze the resume watch's beat can miss
    finally:
        for pid in pids:
            os.killpg(pid, signal.SIGCONT)
        os.kill(gateway.proc.pid, signal.SIGCONT)
    [dark] = wait_darks(gateway)
    detail = dark["detail"]
    assert detail["cause"] == "asleep" and detail["servers"] == {"shop": 10.0}
    resumed = [e for e in gateway.events() if e["kind"] == "host_resumed"]
    assert len(resumed) == 1 and detail["seconds"] == pytest.approx(resumed[0]["detail"]["seconds"], abs=0.5)
    assert "the laptop was asleep for" in dark["reason"]


def test_cloudflare_s_view_adds_what_the_gateway_could_not_see(gateway: Gateway,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge lost the tunnel a minute before the gateway's own last record (its internet went
    first), and had it back a moment after the next start: both ends count, once."""
    with FakeCloudflare() as cf:
        account = cf.add_account()
        made = cf.add_tunnel(account, "laptop")
        cf.tunnels[TUNNEL_ID] = {**cf.tunnels.pop(made), "id": TUNNEL_ID}
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", cf.token)  # the daemon inherits the test's env
        monkeypatch.setenv("GATEWAY_CLOUDFLARE_EVERY", "0.3")
        with_tunnel(gateway, fake_cloudflared(gateway.config_dir.parent / "bin"),
                    extra=f'api_url = "{cf.url}"\naccount_id = "{account}"\ndns = false\n')
        gateway.write("shop", PUBLIC)
        gateway.start()
        gateway.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in ("shop", "cloudflared")), 30)
        lost = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        assert gateway.stop() == 0
        cf.connector(TUNNEL_ID, False, lost.isoformat())
        time.sleep(OFF_FOR)
        gateway.start()
        [own] = wait_darks(gateway)
        time.sleep(1.0)  # Cloudflare is asked; the connector comes back a moment later
        back = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        cf.connector(TUNNEL_ID, True, back.isoformat())
        found = wait_darks(gateway, 2)
        seen = found[1]["detail"]
        assert seen["cause"] == "tunnel" and seen["seen_by"] == "cloudflare" and seen["servers"] == {"shop": 10.0}
        assert datetime.fromisoformat(seen["since"]) == lost and datetime.fromisoformat(seen["until"]) == back
        assert "Cloudflare saw the tunnel offline" in found[1]["reason"]
        shop = month_of(gateway, "shop", ("off", "tunnel"), timeout=80)
        own_s = own["detail"]["seconds"]
        assert shop["dark"]["month"]["off"] == pytest.approx(own_s, abs=0.2)
        # the union: Cloudflare's part before and after the gateway's own, not the overlap twice
        assert shop["dark"]["month"]["tunnel"] == pytest.approx((back - lost).total_seconds() - own_s, abs=0.5)
