"""Differential: the pure checks against a real cloudflared, when one is given
(CLOUDFLARED=/path/to/cloudflared; none is installed where CI runs, so this is skipped
there). Each case is rendered as config.yml and validated by both: they must agree on
accepting it, and a refusal's message must be cloudflared's (`Validation failed: ...` or the
YAML decoder's line). Then what validation does not show, with `ingress rule URL` (which rule a
request lands on) and `tunnel run` (what stops it): a path the gateway calls dead lands on the
catch-all; in the gateway's order every rule is reached by its own URL; a caPool written as the
gateway writes it now is read, the one it wrote before (``~/...``) stopped the tunnel."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler.tunnel.ingress import IngressError, Rule, check_rules, rule_dict, to_yaml

REAL = os.environ.get("CLOUDFLARED")
pytestmark = pytest.mark.skipif(not REAL or not Path(REAL).is_file(),
                                reason="set CLOUDFLARED to a real cloudflared binary to compare with it")
OK = "http://127.0.0.1:8000"
CASES = [
    *[Rule("a.example.com", p, OK, server="a") for p in
      ["^/api/.*$", "a++", "(?>x)", "\\Z", "\\z", "\\x{e9}", "\\Qa.b\\E", "[z-a]", "\\e", "a{1001}", "\\C",
       "/(x", "[[:alpha:]]", "(?P<v>x)", "(?<v>x)",
       # Go 1.25+ names (RE2 refuses the first ones, Go the last ones) and sizes past RE2's default budget
       "^/\\p{Letter}", "^/\\p{greek}", "^/\\p{Lc}", "^/\\pl", "^/\\p{lowercase letter}", "^/\\p{Any}",
       "^/\\p{ASCII}", "^/\\p{Cn}", "^/\\P{Assigned}", "^/\\p{Old_Italic}", "^/\\p{SignWriting}",
       "^/\\p{L&}", "^/\\pL{500}", "^/\\pL{1000}", "^/(?:\\pN{100}){10}", "^/api\n", "a{1000}", "(a{10}){101}"]],
    *[Rule("a.example.com", "", OK, o, "a") for o in
      [{"connectTimeout": "-5s"}, {"connectTimeout": "1h30m"}, {"connectTimeout": ".5s"},
       {"ipRules": [{"prefix": "10.0.0.0/8", "ports": [80], "allow": True}]},
       {"access": {"required": True, "teamName": "t", "audTag": ["x"]}}, {"connectTimeout": "2562047h"},
       {"connectTimeout": "3000000h"}]],
]


def config_text(rule: Rule) -> str:
    return to_yaml({"tunnel": "6ff42ae2-765d-4adf-8112-31c55c1551ef", "ingress": [rule_dict(rule), rule_dict(Rule())]})


def _ours(rule: Rule) -> str | None:
    try:
        check_rules([rule, Rule()])
    except IngressError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("rule", CASES, ids=lambda r: f"{r.path or ''}|{r.origin or ''}")
def test_agrees_with_the_real_cloudflared(tmp_path: Path, rule: Rule):
    path = tmp_path / "config.yml"
    path.write_text(config_text(rule))  # written as the gateway writes it, but without its checks
    done = subprocess.run([REAL, "tunnel", "--config", str(path), "ingress", "validate"], capture_output=True,
                          text=True, timeout=30, check=False)
    accepted = done.returncode == 0 and "OK" in done.stdout.split()
    ours = _ours(rule)
    assert accepted == (ours is None), (ours, done.stdout, done.stderr)
    if ours is not None and "Validation failed: " in done.stderr:
        assert ours in done.stderr


def _rule_for(path: Path, url: str) -> int | None:
    """The 0-based rule `cloudflared tunnel --config F ingress rule URL` lands on."""
    import re

    done = subprocess.run([REAL, "tunnel", "--config", str(path), "ingress", "rule", url], capture_output=True,
                          text=True, timeout=30, check=False)
    m = re.search(r"Matched rule #(\d+)", done.stdout)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("rule_path, url_path", [
    ("^api", "/api"), ("(?i)^Api/.*", "/api/x"), ("^$", "/"), ("^[a-z]+", "/abc"), ("^\\d+", "/123"),
    ("^/api\n", "/api"),
])
def test_a_path_the_gateway_calls_dead_never_matches(tmp_path: Path, rule_path: str, url_path: str):
    from reconciler.tunnel.paths import dead_path

    assert dead_path(rule_path)
    path = tmp_path / "config.yml"
    path.write_text(config_text(Rule("a.example.com", rule_path, OK, server="a")))
    assert _rule_for(path, f"https://a.example.com{url_path}") == 1  # the catch-all


def test_in_the_gateways_order_every_rule_is_reached(tmp_path: Path):
    from reconciler.tunnel.ingress import ordered, render

    rules = ordered([Rule("h.example.com", "^/api.*", OK, server="broad"),
                     Rule("h.example.com", "^/api/x", "http://127.0.0.1:8001", server="narrow"),
                     Rule("h.example.com", "^/.*", "http://127.0.0.1:8002", server="all"),
                     Rule("*.example.com", "", "http://127.0.0.1:8003", server="wild")])
    path = tmp_path / "config.yml"
    path.write_text(render("6ff42ae2-765d-4adf-8112-31c55c1551ef", None, rules))
    for url, server in (("https://h.example.com/api/x/1", "narrow"), ("https://h.example.com/apis", "broad"),
                        ("https://h.example.com/other", "all"), ("https://w.example.com/", "wild")):
        index = _rule_for(path, url)
        assert index is not None and rules[index].server == server, (url, index)


def test_the_ca_pool_the_gateway_writes_is_the_one_cloudflared_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`tunnel run` stops with "Error starting local service ...: Error loading cert pool" on a
    caPool it cannot read (offline it then stops on the edge lookup instead: never on the pool)."""
    from reconciler.tunnel.routes import Known, with_ca_pool

    home = tmp_path / "home"
    home.mkdir()
    (home / "ca.pem").write_text(ca_pem())
    monkeypatch.setenv("HOME", str(home))
    creds = tmp_path / "creds.json"
    creds.write_text('{"AccountTag":"a","TunnelSecret":"c2VjcmV0","TunnelID":"6ff42ae2-765d-4adf-8112-31c55c1551ef"}')
    written, _ = with_ca_pool({"caPool": "~/ca.pem"}, Known(config_dir=tmp_path))
    for origin, broken in (({"caPool": "~/ca.pem"}, True), (written, False)):
        path = tmp_path / "config.yml"
        path.write_text(to_yaml({"tunnel": "6ff42ae2-765d-4adf-8112-31c55c1551ef", "credentials-file": str(creds),
                                 "ingress": [rule_dict(Rule("a.example.com", "", OK, origin, "a")),
                                             rule_dict(Rule())]}))
        done = subprocess.run([REAL, "tunnel", "--config", str(path), "--metrics", "127.0.0.1:0", "run"],
                              capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
        said = done.stdout + done.stderr
        assert ("Error starting local service" in said) is broken, said[-2000:]


def ca_pem() -> str:
    """A self-signed CA certificate, PEM (what a caPool file holds)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()
