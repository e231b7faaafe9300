"""Routes that pass cloudflared's own checks but can never work, take the whole tunnel down,
or take what is not a server's, and routes refused although Go's regexp (cloudflared's) takes
them. Each case is decided as cloudflared 2026.8 (Go 1.25+) would; `test_real_cloudflared.py`
compares the same cases with a real binary when one is given."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fix_children import toml_str
from reconciler.engine.config import load_dir
from reconciler.tunnel.connector import build, refused_key
from reconciler.tunnel.goregex import go_regex_error
from reconciler.tunnel.ingress import Rule, ordered, rule_dict, to_yaml
from reconciler.tunnel.paths import dead_path, literal_prefix, universal
from reconciler.tunnel.routes import Known, routes
from reconciler.tunnel.validate import _words

OK = "http://127.0.0.1:8000"
CMD = 'command = ["python", "-m", "http.server", "{port}"]\n'


# --- Go's Unicode class names and its size limits ------------------------------------------

@pytest.mark.parametrize("path", [
    "^/\\p{Letter}+$", "^/\\p{greek}", "^/\\p{Lc}", "^/\\p{LC}", "^/\\p{lowercase letter}", "^/\\p{Cased_Letter}",
    "^/\\pl", "^/[\\p{greek}\\d]+", "^/\\P{^Greek}", "^/\\p{Any}", "^/\\p{ASCII}+", "^/\\p{Cn}", "^/\\p{Assigned}",
    "^/\\pL{500}", "^/\\pL{1000}", "^/(?:\\pN{100}){10}", "^/\\Q\\p{Nope}\\E",
])
def test_go_accepts_what_re2_refuses(path: str):
    assert go_regex_error(path) is None


@pytest.mark.parametrize("path, seq", [
    ("^/\\p{Old_Italic}", "\\p{Old_Italic}"),  # two words: no key after Go's canonicalName
    ("^/\\p{SignWriting}", "\\p{SignWriting}"),
    ("^/\\p{Nope}x", "\\p{Nope}"),
    ("^/[a\\p{L&}]", "\\p{L&}"),
    ("^/\\p{Greek", "\\p{Greek"),
])
def test_go_refuses_names_re2_takes_or_that_do_not_exist(path: str, seq: str):
    assert go_regex_error(path) == f"error parsing regexp: invalid character class range: `{seq}`"


# --- dead paths, and which path goes first --------------------------------------------------

@pytest.mark.parametrize("path, why", [
    ("^api", "only matches paths that start with 'a'"),
    ("(?i)^Api/.*", "only matches paths that start with 'A'"),
    ("\\Aapi", "only matches paths that start with 'a'"),
    ("^$", "only matches an empty path"),
    ("^\\z", "only matches an empty path"),
    ("^/api\n", "line break"),
    ("^[a-z]+", "which has no /"),
    ("^\\d+", "which / does not"),
    ("^\\.well-known", "start with '.'"),
])
def test_paths_that_never_match(path: str, why: str):
    assert why in (dead_path(path) or ""), dead_path(path)


@pytest.mark.parametrize("path", [
    "api", "/api", "^/api", "^\\/api", "(?i)^/API", "^(/a|/b)", ".*\\.php$", "^/", "^", "^.*", "^[/a]x", "^[^a]",
    "^\\x2fapi", "^\\x{2f}api", "^a|^/b",
])
def test_paths_that_can_match(path: str):
    assert dead_path(path) is None


def test_universal_paths_and_literal_starts():
    for path in ("", "^/", "/", ".*", "^.*$", "^/.*", ".+", "^/(.*)$"):
        assert universal(path), path
    for path in ("^/api", "^/.+/x", "api", "^/[a-z]*$"):
        assert not universal(path), path
    assert literal_prefix("^/api/v1") == "/api/v1" and literal_prefix("^/api.*") == "/api"
    assert literal_prefix("(?i)^/API") == "/api" and literal_prefix("^/ab*") == "/a" and literal_prefix("/x") == ""
    assert literal_prefix("^\\/api\\.json") == "/api.json" and literal_prefix("^/a|^/b") == ""


def test_a_broad_path_never_comes_before_a_narrower_one():
    """`^/api.*` sorted first by length (and by text: '.' < '/') shadowed `^/api/x` for good."""
    rules = ordered([Rule("h.example.com", "^/api.*", OK, server="broad"),
                     Rule("h.example.com", "^/api/x", OK, server="narrow"),
                     Rule("h.example.com", "^/(api|admin)/v2/things", OK, server="long"),
                     Rule("h.example.com", "^/.*", OK, server="all"),
                     Rule("h.example.com", "", OK, server="host")])
    assert [r.server for r in rules] == ["narrow", "broad", "long", "all", "host", None]


# --- hostnames that no DNS record can route --------------------------------------------------

def _folder(tmp_path: Path, files: dict[str, str], settings: str = "") -> Path:
    folder = tmp_path / "gateway.d"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text)
    if settings:
        (folder / "gateway.toml").write_text(settings)
    return folder


def _routed(tmp_path: Path, domain: str, known: Known | None = None, port: int = 8003):
    folder = _folder(tmp_path, {"good": CMD + 'port = 8001\n[domain]\nhostname = "good.example.com"\n',
                                "zbad": CMD + f"port = {port}\n[domain]\n{domain}\n"})
    result = load_dir(folder)
    assert not result.errors, result.errors
    return routes(result.specs, result.files, {}, known=known)


@pytest.mark.parametrize("domain, key, words", [
    ('hostname = "shop.example.com\\n"', "domain.hostname", "a space or a line break"),
    ('hostname = "shop"', "domain.hostname", "'shop' is a single word"),
    ('hostname = "*.com"', "domain.hostname", "would cover a whole top-level domain"),
    ('hostname = "192.0.2.10"', "domain.hostname", "is an IP address"),
    ('hostname = "xn--zz.example.com"', "domain.hostname", "'xn--zz', which is not valid punycode"),
    ('hostname = "a.example.com"\npath = "^api"', "domain.path", "the path '^api' never matches"),
    ('hostname = "a.example.com"\npath = "/x\\n"', "domain.path", "line break"),
    ('hostname = "good.example.com"\npath = ".*"', "domain.hostname",
     "is already routed to good (good.toml); cloudflared would only ever use the first rule (a path that matches "
     "every path is the same as none)"),
])
def test_routes_that_can_never_work_are_refused_on_their_key(tmp_path, domain, key, words):
    rules, errors, _ = _routed(tmp_path, domain)
    assert [r.server for r in rules] == ["good", None]
    assert len(errors) == 1 and errors[0].key == key and words in errors[0].message, errors
    assert errors[0].path.endswith("zbad.toml") and errors[0].line is not None


def test_a_hostname_outside_the_accounts_domains_is_refused_naming_them(tmp_path):
    known = Known(zones=("example.com", "example.org"))
    rules, errors, _ = _routed(tmp_path, 'hostname = "www.not-my-zone.org"', known)
    assert [r.server for r in rules] == ["good", None]
    assert errors[0].key == "domain.hostname" and errors[0].message == (
        "www.not-my-zone.org is not under a domain of your Cloudflare account (example.com, example.org): use a "
        "name like www.example.com, or add that domain to Cloudflare first")
    for ok in ('hostname = "example.org"', 'hostname = "*.deep.example.org"', 'hostname = "B.Example.COM"'):
        assert not _routed(tmp_path / ok.split('"')[1].replace("*", "star"), ok, known)[1]  # no * in a Windows name
    _, errors, _ = _routed(tmp_path / "none", 'hostname = "a.example.com"', Known(zones=()))
    assert "your Cloudflare account has no domain yet" in errors[0].message


def test_the_pages_hostname_is_reserved_and_the_gateways_ports_are_refused(tmp_path):
    known = Known(page_hostname="Gateway.Example.com", own_ports=frozenset({8765, 8766, 20241}))
    for domain in ('hostname = "gateway.example.com"\npath = "^/login"', 'hostname = "gateway.example.com"'):
        rules, errors, _ = _routed(tmp_path / str(len(domain)), domain, known)
        assert [r.server for r in rules] == ["good", None]
        assert errors[0].key == "domain.hostname" and "is this gateway's own page ([web] hostname" in errors[0].message
    for domain, port in (('hostname = "a.example.com"\nservice = "http://localhost:8766"', 8003),
                         ('hostname = "a.example.com"\nservice = "http://127.0.0.1:8765"', 8003),
                         ('hostname = "a.example.com"\nservice = "https://[::1]:20241"', 8003),
                         ('hostname = "a.example.com"', 8766)):
        rules, errors, _ = _routed(tmp_path / f"p{port}{len(domain)}", domain, known, port)
        assert [r.server for r in rules] == ["good", None], domain
        assert "is this gateway's own (its page, or the tunnel connector)" in errors[0].message, domain
    rules, errors, _ = _routed(tmp_path / "other", 'hostname = "a.example.com"\nservice = "http://10.0.0.5:8765"',
                               known)
    assert not errors and len(rules) == 3  # another machine's port 8765 is not ours


def test_ca_pool_is_written_as_cloudflared_will_read_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "certs").mkdir(parents=True)
    (home / "ca.pem").write_text("pem")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    folder = _folder(tmp_path, {"tilde": CMD + 'port = 8001\n[domain]\nhostname = "a.example.com"\n'
                                           'origin = { caPool = "~/ca.pem" }\n',
                                "rel": CMD + 'port = 8002\n[domain]\nhostname = "b.example.com"\n'
                                         'origin = { caPool = "certs/ca.pem" }\n'})
    (folder / "certs").mkdir()
    (folder / "certs" / "ca.pem").write_text("pem")
    result = load_dir(folder)
    rules, errors, _ = routes(result.specs, result.files, {}, known=Known(config_dir=folder))
    assert not errors
    pools = {r.server: r.origin["caPool"] for r in rules[:-1]}
    assert pools == {"tilde": str(home / "ca.pem"), "rel": str(folder / "certs" / "ca.pem")}
    assert all(os.path.isabs(p) for p in pools.values())
    (home / "ca.pem").unlink()  # cloudflared would exit at once: the route is refused, the others stay
    rules, errors, _ = routes(result.specs, result.files, {}, known=Known(config_dir=folder))
    assert [r.server for r in rules] == ["rel", None] and errors[0].key == "domain.origin.caPool"
    shown = os.path.join("~", "ca.pem")  # the place in the OS's own words
    assert errors[0].message.startswith(f"caPool: there is no file '~/ca.pem' (looked for {shown})")
    assert str(tmp_path) not in errors[0].message  # no full path on the page


def test_a_ca_pool_in_tunnel_settings_is_resolved_too(tmp_path, monkeypatch):
    creds = tmp_path / "creds.json"
    creds.write_text("{}")
    folder = _folder(tmp_path, {"blog": CMD + 'port = 8001\n[domain]\nhostname = "blog.example.com"\n'},
                     f'[tunnel]\nid = "6ff42ae2-765d-4adf-8112-31c55c1551ef"\ncredentials_file = {toml_str(creds)}\n'
                     'origin = { caPool = "ca.pem" }\n')
    plan = build(load_dir(folder), folder, tmp_path / "data", {}, environ={"PATH": ""}, screen=False)
    assert [e.key for e in plan.errors] == ["tunnel.origin.caPool"]
    assert f"looked for {os.path.join('gateway.d', 'ca.pem')}" in plan.errors[0].message
    (folder / "ca.pem").write_text("pem")
    plan = build(load_dir(folder), folder, tmp_path / "data", {}, environ={"PATH": ""}, screen=False)
    assert not plan.errors and f'caPool: {json.dumps(str(folder / "ca.pem"))}' in (plan.text or "")  # YAML escapes a \


def test_a_route_cloudflared_could_not_start_is_left_out_until_it_changes(tmp_path):
    from reconciler.tunnel.routes import route_key

    folder = _folder(tmp_path, {"a": CMD + 'port = 8001\n[domain]\nhostname = "a.example.com"\n',
                                "b": CMD + 'port = 8002\n[domain]\nhostname = "b.example.com"\n'})
    result = load_dir(folder)
    rules, _, _ = routes(result.specs, result.files, {})
    key = route_key(next(r for r in rules if r.server == "b"))
    why = "Error starting local service http://127.0.0.1:8002: Error loading cert pool: unable to read the file"
    rules, errors, _ = routes(result.specs, result.files, {}, known=Known(failed={key: why}))
    assert [r.server for r in rules] == ["a", None] and errors[0].key == "domain.service"
    assert errors[0].message.startswith(f"cloudflared could not start this route: {why}; it is left out")
    (folder / "b.toml").write_text(CMD + 'port = 8003\n[domain]\nhostname = "b.example.com"\n')  # changed: tried again
    result = load_dir(folder)
    rules, errors, _ = routes(result.specs, result.files, {}, known=Known(failed={key: why}))
    assert [r.server for r in rules] == ["a", "b", None] and not errors


# --- cloudflared's refusals of one route: the right key, the whole message, no paths ---------

def test_a_two_line_yaml_error_is_kept_whole_on_the_right_key(tmp_path):
    candidate = str(tmp_path / "data" / "tunnel" / ".candidate.123.yml")
    lines = [f"error parsing YAML in config file at {candidate}: yaml: unmarshal errors:",
             "  line 8: cannot unmarshal !!str `3000000h` into time.Duration"]
    words = _words([ln.strip() for ln in lines], candidate, 1)
    assert words == ("error parsing YAML in config file: yaml: unmarshal errors: line 8: cannot unmarshal !!str "
                     "`3000000h` into time.Duration")
    assert str(tmp_path) not in words
    rule = Rule("a.example.com", "", OK, {"noTLSVerify": True, "connectTimeout": "3000000h"}, "a")
    text = to_yaml({"tunnel": "6ff42ae2-765d-4adf-8112-31c55c1551ef", "ingress": [rule_dict(rule), rule_dict(Rule())]},
                   "Written by omen-gateway from gateway.d; edits here are overwritten.")  # as render lays it out
    assert text.splitlines()[7].strip().startswith("connectTimeout")  # line 8, as cloudflared counts
    key, message = refused_key(words, text)
    assert key == "origin.connectTimeout"
    assert message == ("error parsing YAML in config file: yaml: unmarshal errors: cannot unmarshal !!str "
                       "`3000000h` into time.Duration")
    assert refused_key("Rule #1 has an invalid regex: x", text)[0] == "path"
    assert refused_key("Warning: unused keys detected in your config file. Here is a list of unused keys: line 6: "
                       "field conectTimeout not found in type config.OriginRequestConfig", text)[0] == \
        "origin.conectTimeout"


def test_a_duration_that_overflows_is_refused_like_go():
    from reconciler.tunnel.ingress import IngressError, check_origin

    check_origin({"connectTimeout": "2562047h"})
    with pytest.raises(IngressError, match="cannot unmarshal !!str `3000000h` into time.Duration"):
        check_origin({"connectTimeout": "3000000h"})
