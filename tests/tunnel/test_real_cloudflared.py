"""Differential: the pure checks against a real cloudflared, when one is given
(CLOUDFLARED=/path/to/cloudflared; none is installed where CI runs, so this is skipped
there). Each case is rendered as config.yml and validated by both: they must agree on
accepting it, and a refusal's message must be cloudflared's (`Validation failed: ...` or the
YAML decoder's line)."""

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
       "/(x", "[[:alpha:]]", "(?P<v>x)", "(?<v>x)"]],
    *[Rule("a.example.com", "", OK, o, "a") for o in
      [{"connectTimeout": "-5s"}, {"connectTimeout": "1h30m"}, {"connectTimeout": ".5s"},
       {"ipRules": [{"prefix": "10.0.0.0/8", "ports": [80], "allow": True}]},
       {"access": {"required": True, "teamName": "t", "audTag": ["x"]}}]],
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
