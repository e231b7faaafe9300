"""The tunnel connector supervised like any server, through a real daemon (the `gateway`
fixture), real PostgreSQL and a real child process: `tests/tunnel/fake_cloudflared.py`, which
stands in for cloudflared and its edge connection (no cloudflared and no internet here). It
reads the config the gateway wrote and serves /ready on the metrics address the gateway gave it.

Config changes restart the connector (restart, not a two-connector handover)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.fix_gateway import Gateway
from tests.fix_children import toml_str

HERE = Path(__file__).resolve().parent
TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"


def fake_cloudflared(folder: Path) -> Path:
    """An executable `cloudflared` (the fake, run by this Python). Windows reads no "#!" line: there
    it is cloudflared.py run by a copy of the lane's tests/windows/shebang.c (GATEWAY_TEST_SHEBANG_EXE)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = f"#!{sys.executable}\n" + (HERE / "fake_cloudflared.py").read_text()
    if sys.platform == "win32":
        shim = os.environ.get("GATEWAY_TEST_SHEBANG_EXE")
        if not shim:
            pytest.skip("a script as a program on Windows needs the lane's shebang.exe (GATEWAY_TEST_SHEBANG_EXE)")
        exe = folder / "cloudflared.exe"
        shutil.copyfile(shim, exe)
        (folder / "cloudflared.py").write_text(script)
        return exe
    exe = folder / "cloudflared"
    exe.write_text(script)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def with_tunnel(gw: Gateway, exe: Path | None, extra: str = "") -> Path:
    """Add a [tunnel] table to the fixture's gateway.toml; returns where config.yml goes."""
    creds = gw.config_dir.parent / "creds.json"
    creds.write_text('{"AccountTag":"a","TunnelSecret":"c2VjcmV0","TunnelID":"%s"}' % TUNNEL_ID)
    config_yml = gw.config_dir.parent / "tunnel" / "config.yml"
    text = (gw.config_dir / "gateway.toml").read_text()
    text += (f'\n[tunnel]\nid = "{TUNNEL_ID}"\ncredentials_file = {toml_str(creds)}\nconfig_file = {toml_str(config_yml)}\n'
             f'check_interval = "200ms"\nrestart_after = "1s"\nstart_period = "5s"\ngrace_period = "1s"\n{extra}')
    if exe is not None:
        text += f'cloudflared = {toml_str(exe)}\n'
    (gw.config_dir / "gateway.toml").write_text(text)
    return config_yml


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ReadinessWatch(threading.Thread):
    """Polls /ready of every running connector (main and second) every 20 ms: a poll where
    none is ready is a gap in the tunnel."""

    def __init__(self, config_yml: Path) -> None:
        super().__init__(daemon=True)
        self.config_yml, self.polls, self.gaps, self.done = config_yml, 0, 0, threading.Event()

    def ready_somewhere(self) -> bool:
        for pid, _, port in started(self.config_yml):
            if not psutil.pid_exists(int(pid)):
                continue
            try:
                with NO_PROXY.open(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                continue
        return False

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.polls += 1
            self.gaps += 0 if self.ready_somewhere() else 1

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def text_of(config_yml: Path) -> str:
    """config.yml as it is now. The gateway replaces it at any moment, and on Windows a read at
    that instant is refused (the file is between names, or held by the rename): read again."""
    for _ in range(100):
        try:
            return config_yml.read_text()
        except (FileNotFoundError, PermissionError):
            time.sleep(0.02)
    return config_yml.read_text()


def started(config_yml: Path) -> list[list[str]]:
    """Each start of the fake: [pid, hash of its config, its metrics port]."""
    path = config_yml.with_name(config_yml.name + ".starts")
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def starts(config_yml: Path) -> list[str]:
    """Each start of the fake as "PID HASH-OF-CONFIG"."""
    return [" ".join(fields[:2]) for fields in started(config_yml)]


def no_handover_under_way(gw: Gateway, config_yml: Path) -> bool:
    """The main connector runs on the config.yml there is, and no other connector is alive."""
    main = gw.status()["cloudflared"]
    digest = hashlib.sha256(text_of(config_yml).encode()).hexdigest()[:16]
    others = [int(line.split()[0]) for line in starts(config_yml) if int(line.split()[0]) != main["pid"]]
    return (main["phase"] == "running" and f"{main['pid']} {digest}" in starts(config_yml)
            and not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in others))


def wait(check, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.05)


def test_connector_runs_routes_restart_on_change_crash_and_stuck(gateway: Gateway):
    exe = fake_cloudflared(gateway.config_dir.parent / "bin")
    config_yml = with_tunnel(gateway, exe)
    gateway.write("blog", 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                          'port = "auto"\n[domain]\nhostname = "blog.example.com"\n')
    gateway.start()

    # running, healthy by /ready, with the blog's auto port routed once it is handed out
    up = gateway.wait_phase("cloudflared", "running")
    assert up["port"] and up["health"] == "ok"
    blog = gateway.wait_phase("blog", "running")
    wait(lambda: f'"http://127.0.0.1:{blog["port"]}"' in text_of(config_yml), what="the blog's route")
    text = text_of(config_yml)
    assert f'tunnel: "{TUNNEL_ID}"' in text and '- hostname: "blog.example.com"' in text
    assert text.rstrip().endswith('- service: "http_status:404"')
    # the new route restarted the connector on the new config: it comes back ready
    wait(lambda: gateway.client.status()["gateway"]["tunnel"]["state"] == "running", what="tunnel running")
    assert any(s["public_url"] == "https://blog.example.com" for s in gateway.client.status()["servers"])

    # an ingress change: config.yml rewritten (old one kept as .prev), connector restarted on it
    wait(lambda: len(starts(config_yml)) >= 1, what="a start")
    wait(lambda: no_handover_under_way(gateway, config_yml), timeout=30, what="the blog's route handed over")
    before = len(starts(config_yml))
    dones = sum(e["kind"] == "tunnel_handover" and e["reason"].startswith("done") for e in gateway.events("cloudflared"))
    watch = ReadinessWatch(config_yml)
    watch.start()
    gateway.write("api", 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                         'port = "auto"\n[domain]\nhostname = "api.example.com"\npath = "^/v1/.*$"\n')
    wait(lambda: "api.example.com" in text_of(config_yml), what="the api route")
    assert "api.example.com" not in config_yml.with_name("config.yml.prev").read_text()
    # ... without a gap: a second connector serves the new routes while the main one restarts
    def handover(prefix: str) -> list[dict]:
        return [e for e in gateway.events("cloudflared") if e["kind"] == "tunnel_handover"
                and e["reason"].startswith(prefix)]

    wait(lambda: len(handover("done")) > dones, timeout=30, what="the handover done")
    watch.stop()
    assert watch.polls >= 5 and watch.gaps == 0, f"{watch.gaps} of {watch.polls} polls found no ready connector"
    events = gateway.events("cloudflared")
    seq = {e["seq"]: e for e in events}
    ready = handover("the second connector is ready")[-1]["seq"]
    restart = [s for s, e in seq.items() if e["to_phase"] == "stopping" and e["reason"] == "settings changed"]
    assert restart and all(ready < s for s in restart[-1:])  # the bridge was ready before the main stopped
    digest_now = hashlib.sha256(text_of(config_yml).encode()).hexdigest()[:16]
    main = gateway.status()["cloudflared"]
    assert main["phase"] == "running" and f"{main['pid']} {digest_now}" in starts(config_yml)
    bridges = [int(line.split()[0]) for line in starts(config_yml)[before:] if int(line.split()[0]) != main["pid"]]
    assert bridges and all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE
                           for p in bridges)
    pid = str(main["pid"])

    # a crash: restarted like any server
    control = config_yml.with_name("config.yml.fake")
    count = len(starts(config_yml))
    control.write_text("crash")
    wait(lambda: gateway.status()["cloudflared"]["pid"] != int(pid), what="the crash noticed")
    control.write_text("")  # back to normal (no unlink: Windows refuses it while the fake reads)
    wait(lambda: gateway.status()["cloudflared"]["phase"] == "running" and len(starts(config_yml)) > count,
         what="running again after the crash")

    # not ready for longer than restart_after (e.g. stuck after the internet came back): restarted
    count = len(starts(config_yml))
    control.write_text("not-ready")
    shown: dict[str, str] = {}

    def offline() -> bool:  # the state and its summary from one answer (the restart may follow at once)
        shown.update(gateway.client.status()["gateway"]["tunnel"])
        return shown["state"] == "offline"

    wait(offline, timeout=5, what="offline shown")
    assert "offline since" in shown["summary"]
    wait(lambda: len(starts(config_yml)) > count, timeout=15, what="a restart while not ready")
    control.write_text("")  # back to normal (no unlink: Windows refuses it while the fake reads)
    gateway.wait_for(lambda s: s["cloudflared"]["phase"] == "running" and s["cloudflared"]["health"] == "ok",
                     what="ready again")
    kinds = {(e["to_phase"], e["server"]) for e in gateway.events("cloudflared")}
    assert ("exited", "cloudflared") in kinds and ("running", "cloudflared") in kinds
    assert any(e["kind"] == "tunnel_config" for e in gateway.events("cloudflared"))


def test_missing_cloudflared_and_invalid_domains(gateway: Gateway):
    with_tunnel(gateway, None, extra='cloudflared = "/nonexistent/cloudflared"\n')
    gateway.write("ok", 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                        'port = "auto"\n[domain]\nhostname = "ok.example.com"\n')
    gateway.write("bad", 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                         'port = "auto"\n[domain]\nhostname = "bad.example.com:8080"\n')
    gateway.write("cloudflared", 'command = ["python", "-c", "pass"]\n')
    gateway.start()
    servers = gateway.wait_phase("ok", "running")
    servers = gateway.status()
    assert "cloudflared" not in servers or servers["cloudflared"]["in_config"] is False
    assert servers["bad"]["in_config"]  # the server runs; only its route is refused
    gw = gateway.client.status()["gateway"]
    assert gw["tunnel"]["state"] == "cloudflared missing"
    assert "winget install --id Cloudflare.cloudflared" in gw["tunnel"]["summary"]
    assert "brew install cloudflared" in gw["tunnel"]["summary"]
    errors = "\n".join(gw["config_errors"])
    assert "bad.toml:4: domain.hostname: Hostname cannot contain a port" in errors
    assert "cloudflared.toml: the name 'cloudflared' is reserved" in errors
    assert os.path.basename(gateway.config_dir / "ok.toml") not in errors


def test_dns_routes_follow_the_folder_by_themselves(gateway: Gateway, monkeypatch):
    """No command: a server with a [domain] gets its proxied CNAME through the (local, fake)
    Cloudflare API; a later server too; a record the gateway did not create is left alone."""
    from reconciler.tunnel.dns import target
    from tests.tunnel.fake_cloudflare import FakeCloudflare

    with FakeCloudflare() as cf:
        zone = cf.add_zone("example.com")
        foreign = cf.add_record(zone, "A", "mail.example.com", "192.0.2.1")
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", cf.token)  # the daemon inherits the test's env
        exe = fake_cloudflared(gateway.config_dir.parent / "bin")
        with_tunnel(gateway, exe, extra=f'api_url = "{cf.url}"\n')
        gateway.write("blog", 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                              'port = "auto"\n[domain]\nhostname = "blog.example.com"\n')
        gateway.start()

        def cnames() -> dict[str, str]:
            return {r["name"]: r["content"] for r in list(cf.records.values()) if r["type"] == "CNAME"}

        wait(lambda: "blog.example.com" in cnames(), timeout=20, what="the blog's CNAME")
        gateway.write("mail", 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                              'port = "auto"\n[domain]\nhostname = "mail.example.com"\n')
        gateway.write("shop", 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                              'port = "auto"\n[domain]\nhostname = "shop.example.com"\n')
        wait(lambda: "shop.example.com" in cnames(), timeout=20, what="the shop's CNAME")
        assert cnames() == {"blog.example.com": target(TUNNEL_ID), "shop.example.com": target(TUNNEL_ID)}
        assert cf.records[foreign]["content"] == "192.0.2.1"  # not ours: untouched
        synced = [e for e in gateway.events("cloudflared") if e["kind"] == "dns_synced"]
        assert synced and "mail.example.com: conflict" in synced[-1]["reason"]
        gateway.stop()


def test_a_route_cloudflared_refuses_is_left_out_and_named_while_the_others_run(gateway: Gateway):
    """The running daemon asks the installed cloudflared (here the stand-in, which refuses
    bad.example.com as the real one refuses e.g. `\\C` in a path) before writing config.yml."""
    exe = fake_cloudflared(gateway.config_dir.parent / "bin")
    (exe.parent / "refuse").write_text("bad.example.com\n")
    config_yml = with_tunnel(gateway, exe)
    for name in ("good", "bad"):
        gateway.write(name, 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                            f'port = "auto"\n[domain]\nhostname = "{name}.example.com"\n')
    gateway.start()
    wait(lambda: config_yml.exists() and '"good.example.com"' in text_of(config_yml), timeout=20,
         what="the good route written")
    gateway.wait_for(lambda s: s.get("cloudflared", {}).get("phase") == "running", what="the connector running")
    assert "bad.example.com" not in text_of(config_yml)
    errors = "\n".join(gateway.client.status()["gateway"]["config_errors"])
    assert "bad.toml:3: domain.path: cloudflared refused this route: Rule #1 has an invalid regex" in errors
    assert gateway.status()["bad"]["phase"] == "running"  # only its route is refused; the server runs
    gateway.stop()
