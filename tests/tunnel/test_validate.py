"""The installed cloudflared's own validator screens every candidate config: a rule it refuses
is left out and named on its own server file while the rest stay routed; a candidate refused
as a whole is never written. Run against tests/tunnel/fake_cloudflared.py (a real child
process speaking `tunnel --config F ingress validate` like cloudflared)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reconciler.engine.config import load_dir
from reconciler.tunnel.connector import build, ingress_hash, routes
from reconciler.tunnel.ingress import Rule, render
from reconciler.tunnel.validate import Verdict, run, screen
from tests.tunnel.test_connector import fake_cloudflared
from tests.fix_children import toml_str

CMD = 'command = ["python", "-m", "http.server", "{port}"]\n'


def _folder(tmp_path: Path, exe: Path, files: dict[str, str], tunnel: str = "") -> Path:
    folder = tmp_path / "gateway.d"
    folder.mkdir()
    (folder / "gateway.toml").write_text(f'[tunnel]\nid = "t"\ncloudflared = {toml_str(exe)}\n{tunnel}')
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text)
    return folder


def test_the_validator_is_asked_with_config_before_ingress_and_needs_ok(tmp_path):
    exe = fake_cloudflared(tmp_path / "bin")
    good = render("t", None, [Rule("a.example.com", "", "http://127.0.0.1:1", server="a"), Rule()])
    assert run(exe, good, tmp_path) == Verdict(True)
    # a Warning exits 0 without OK: refused
    warned = run(exe, good.replace('service: "http://127.0.0.1:1"', 'service: "http://127.0.0.1:1"\n  '
                                   'originRequest:\n    conectTimeout: "5s"'), tmp_path)
    assert not warned.ok and "field conectTimeout not found in type config.OriginRequestConfig" in warned.message
    # the flag after the subcommand: "Incorrect Usage", exit 0, no OK (why exit 0 alone is never trusted)
    wrong = subprocess.run([str(exe), "tunnel", "ingress", "validate", "--config", "x"], capture_output=True,
                           text=True)
    assert wrong.returncode == 0 and "OK" not in wrong.stdout.split()
    assert not list(tmp_path.glob(".candidate*"))  # the candidate file is removed


def test_one_refused_route_is_left_out_and_named_on_its_file(tmp_path):
    exe = fake_cloudflared(tmp_path / "bin")
    (exe.parent / "refuse").write_text("b.example.com\n")
    folder = _folder(tmp_path, exe, {
        "a": CMD + 'port = 8001\n[domain]\nhostname = "a.example.com"\n',
        "b": CMD + 'port = 8002\n[domain]\nhostname = "b.example.com"\npath = "^/x"\n',
        "c": CMD + 'port = 8003\n[domain]\nhostname = "C.Example.com"\n',
    })
    plan = build(load_dir(folder), folder, tmp_path / "data", {})
    assert [r.hostname for r in plan.rules] == ["a.example.com", "c.example.com", ""]
    assert plan.spec is not None and "b.example.com" not in (plan.text or "") and "c.example.com" in plan.text
    [error] = plan.errors
    assert error.path.endswith("b.toml") and error.key == "domain.path" and error.line is not None
    assert error.message == ("cloudflared refused this route: Rule #2 has an invalid regex: error parsing regexp: "
                             "invalid escape sequence: `\\C`")


def test_a_candidate_refused_as_a_whole_keeps_the_running_config(tmp_path):
    exe = fake_cloudflared(tmp_path / "bin")
    folder = _folder(tmp_path, exe, {"a": CMD + 'port = 8001\n[domain]\nhostname = "a.example.com"\n'})
    data = tmp_path / "data"
    running = data / "tunnel" / "config.yml"
    running.parent.mkdir(parents=True)
    running.write_text("# the config cloudflared runs on now\n")

    def refuse_all(text: str) -> Verdict:
        return Verdict(False, "The config file doesn't contain any ingress rules")

    rules = [Rule("a.example.com", "", "http://127.0.0.1:1", server="a"), Rule()]
    result = screen(lambda rs: render("t", None, rs), rules, refuse_all)
    assert result.whole == "The config file doesn't contain any ingress rules" and result.refused == []
    # through build: nothing is written, the running config.yml stays the plan's text
    (exe.parent / "refuse").write_text("ALL\n")
    plan = build(load_dir(folder), folder, data, {})
    assert plan.refused and plan.text == "# the config cloudflared runs on now\n"
    assert plan.spec is not None and plan.spec.env["GATEWAY_INGRESS_HASH"] == ingress_hash(plan.text)
    [error] = plan.errors
    assert error.path.endswith("gateway.toml") and error.message == (
        "cloudflared refused the new config.yml: The config file doesn't contain any ingress rules; the previous "
        "one stays in force")
    running.unlink()  # nothing running: no connector at all, and why
    plan = build(load_dir(folder), folder, data, {})
    assert plan.spec is None and "cloudflared refused the config" in (plan.missing or "")


def test_one_hostname_across_case_and_punycode(tmp_path):
    folder = tmp_path / "gateway.d"
    folder.mkdir()
    (folder / "a.toml").write_text(CMD + 'port = 8001\n[domain]\nhostname = "bücher.example"\n', encoding="utf-8")
    (folder / "b.toml").write_text(CMD + 'port = 8002\n[domain]\nhostname = "xn--bcher-kva.example"\n')
    (folder / "c.toml").write_text(CMD + 'port = 8003\n[domain]\nhostname = "Shop.example.com"\n')
    (folder / "d.toml").write_text(CMD + 'port = 8004\n[domain]\nhostname = "shop.EXAMPLE.com"\n')
    result = load_dir(folder)
    rules, errors, _ = routes(result.specs, result.files, {})
    assert [r.hostname for r in rules] == ["shop.example.com", "xn--bcher-kva.example", ""]
    assert sorted(Path(e.path).name for e in errors) == ["b.toml", "d.toml"]
    assert all("is already routed to" in e.message for e in errors)
