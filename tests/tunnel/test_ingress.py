"""Ingress rules: cloudflared's checks with its exact messages (cloudflare/cloudflared ingress/,
see /work/shared/notes/cloudflared.md §1.4), the order of rules, and the rendered YAML. Plus the
loader view: a bad [domain] is a config error naming the key, and the other servers keep their routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.engine.config import load_dir
from reconciler.tunnel.connector import build, routes, write_config
from reconciler.tunnel.ingress import IngressError, Rule, check_rules, check_service, ordered, render

OK = "http://127.0.0.1:8000"
CATCH = Rule()


@pytest.mark.parametrize("rules, message", [
    ([], "The config file doesn't contain any ingress rules"),
    ([Rule("a.example.com", "", OK)],
     "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"),
    ([Rule("*", "", OK), CATCH],
     "Rule #1 is matching the hostname '*', but this will match every hostname, meaning the rules which follow "
     "it will never be triggered."),
    ([Rule("a.example.com", "", OK), Rule("", "", OK), CATCH],
     "Rule #2 is matching the hostname '', but this will match every hostname, meaning the rules which follow "
     "it will never be triggered."),
    ([Rule("a.*.example.com", "", OK), CATCH],
     'Hostname patterns can have at most one wildcard character ("*") and it can only be used for subdomains, '
     'e.g. "*.example.com"'),
    ([Rule("a.example.com:8080", "", OK), CATCH], "Hostname cannot contain a port"),
    ([Rule("a.example.com", "/(unclosed", OK), CATCH],
     "Rule #1 has an invalid regex: error parsing regexp: missing closing ): `/(unclosed`"),
    ([Rule("a.example.com", "", "localhost:8000"), CATCH],
     "localhost:8000 is an invalid address, please make sure it has a scheme and a hostname"),
    ([Rule("a.example.com", "", "127.0.0.1:8000"), CATCH],
     'parse "127.0.0.1:8000": first path segment in URL cannot contain colon'),
    ([Rule("a.example.com", "", ""), CATCH], " is an invalid address, please make sure it has a scheme and a hostname"),
    ([Rule("a.example.com", "", "http://127.0.0.1:8000/app"), CATCH],
     "http://127.0.0.1:8000/app is an invalid address, ingress rules don't support proxying to a different path "
     "on the origin service. The path will be the same as the eyeball request's path"),
    ([Rule("a.example.com", "", "http_status:abc"), CATCH],
     'invalid HTTP status code: strconv.Atoi: parsing "abc": invalid syntax'),
    ([Rule("a.example.com", "", "http_status:99"), CATCH], "invalid HTTP status code: 99"),
    ([Rule("a.example.com", "", OK, {"access": {"required": True, "audTag": ["x"]}}), CATCH],
     "access.TeamName cannot be blank when access.audTags are present"),
    ([Rule("a.example.com", "", OK, {"conectTimeout": "5s"}), CATCH],
     "field conectTimeout not found in type config.OriginRequestConfig"),
])
def test_bad_rules_give_cloudflareds_message(rules: list[Rule], message: str):
    with pytest.raises(IngressError) as err:
        check_rules(rules)
    assert str(err.value) == message


@pytest.mark.parametrize("service", [
    "http://127.0.0.1:8000", "https://localhost:8443", "ws://127.0.0.1:1", "tcp://127.0.0.1:22", "ssh://host:22",
    "unix:/run/app.sock", "unix+tls:/run/app.sock", "http_status:404", "hello_world", "hello-world", "bastion",
    "http://[::1]:8000",
])
def test_good_services(service: str):
    check_service(service)


@pytest.mark.parametrize("hostname, path", [
    ("blog.example.com", ""), ("*.example.com", ""), ("*.example.com", "^/api/.*$"), ("a.b.example.com", "/x"),
])
def test_good_rules(hostname: str, path: str):
    check_rules([Rule(hostname, path, OK), CATCH])


def test_order_is_most_specific_first_and_catch_all_last():
    rules = ordered([
        Rule("*.example.com", "", OK, server="wild"),
        Rule("blog.example.com", "", OK, server="blog"),
        Rule("*.dev.example.com", "", OK, server="dev"),
        Rule("blog.example.com", "^/api/.*$", OK, server="api"),
        Rule("*.example.com", "^/status$", OK, server="status"),
        Rule("app.example.com", "", OK, server="app"),
    ])
    assert [r.server for r in rules] == ["app", "api", "blog", "dev", "status", "wild", None]
    assert rules[-1].service == "http_status:404" and rules[-1].is_catch_all


def test_render_yaml_shape():
    text = render("6ff42ae2-765d-4adf-8112-31c55c1551ef", "/home/u/.cloudflared/x.json",
                  ordered([Rule("*.example.com", "^/api/.*$", "https://127.0.0.1:8443",
                                {"noTLSVerify": True, "connectTimeout": "10s"}, "a"),
                           Rule("a.example.com", "", OK, server="b")]))
    assert text.splitlines()[1:] == [
        'tunnel: "6ff42ae2-765d-4adf-8112-31c55c1551ef"',
        'credentials-file: "/home/u/.cloudflared/x.json"',
        "ingress:",
        '- hostname: "a.example.com"',
        '  service: "http://127.0.0.1:8000"',
        '- hostname: "*.example.com"',
        '  path: "^/api/.*$"',
        '  service: "https://127.0.0.1:8443"',
        "  originRequest:",
        "    noTLSVerify: true",
        '    connectTimeout: "10s"',
        '- service: "http_status:404"',
    ]


@pytest.mark.parametrize("value", ["yes", "on", "null", "true", "0o17", "1e3", "12", "~", "*.x", "a: b", "#x",
                                   "bücher", "- x", "'q'", '"dq"', "x\nnewline", " lead"])
def test_yaml_reads_back_every_string_as_that_string(value):
    import yaml

    text = render("t", None, [Rule("a.example.com", "", OK, {"httpHostHeader": value}, "a"), CATCH])
    assert yaml.safe_load(text)["ingress"][0]["originRequest"]["httpHostHeader"] == value


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "gateway.d"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text)
    return folder


CMD = 'command = ["python", "-m", "http.server", "{port}"]\n'


@pytest.mark.parametrize("domain, key, message", [
    ('hostname = "a.example.com:80"', "domain.hostname", "Hostname cannot contain a port"),
    ('hostname = "a.*.example.com"', "domain.hostname", "Hostname patterns can have at most one wildcard"),
    ('hostname = "*"', "domain.hostname", "Rule #1 is matching the hostname '*'"),
    ('hostname = "bad host.example.com"', "domain.hostname", "'bad host.example.com' is not a valid hostname"),
    ('hostname = "a.example.com"\npath = "/(x"', "domain.path",
     "Rule #1 has an invalid regex: error parsing regexp: missing closing ): `/(x`"),
    ('hostname = "a.example.com"\nservice = "localhost:9"', "domain.service",
     "localhost:9 is an invalid address, please make sure it has a scheme and a hostname"),
    ('hostname = "a.example.com"\norigin = { connectTimeout = 5 }', "domain.origin",
     "cannot unmarshal !!int `5` into time.Duration"),
    ('hostname = "good.example.com"', "domain.hostname", "good.example.com is already routed to good"),
])
def test_a_bad_domain_is_an_error_on_its_key_and_others_keep_their_routes(tmp_path, domain, key, message):
    folder = _folder(tmp_path, {"good": CMD + 'port = 8001\n[domain]\nhostname = "good.example.com"\n',
                                "other": CMD + 'port = 8002\n[domain]\nhostname = "*.example.com"\n',
                                "zbad": CMD + f"port = 8003\n[domain]\n{domain}\n"})
    result = load_dir(folder)
    rules, errors, pending = routes(result.specs, result.files, {})
    assert [(r.hostname, r.service) for r in rules] == [
        ("good.example.com", "http://127.0.0.1:8001"), ("*.example.com", "http://127.0.0.1:8002"),
        ("", "http_status:404")]
    assert len(errors) == 1 and errors[0].key == key and message in errors[0].message, errors
    assert errors[0].path.endswith("zbad.toml") and errors[0].line is not None
    assert pending == []


def test_auto_ports_wait_and_no_port_is_an_error(tmp_path):
    folder = _folder(tmp_path, {"auto": CMD + 'port = "auto"\n[domain]\nhostname = "a.example.com"\n',
                                "noport": 'command = ["x"]\n[domain]\nhostname = "b.example.com"\n',
                                "svc": 'command = ["x"]\n[domain]\nhostname = "c.example.com"\n'
                                       'service = "unix:/run/c.sock"\n'})
    result = load_dir(folder)
    rules, errors, pending = routes(result.specs, result.files, {})
    assert pending == ["auto"] and [r.hostname for r in rules] == ["c.example.com", ""]
    assert [e.key for e in errors] == ["domain.service"] and "has no port" in errors[0].message
    rules, _, pending = routes(result.specs, result.files, {"auto": 20001})
    assert pending == [] and rules[0].service == "http://127.0.0.1:20001"


def test_settings_errors_and_reserved_name(tmp_path):
    folder = _folder(tmp_path, {"cloudflared": 'command = ["x"]\n'})
    (folder / "gateway.toml").write_text('[tunnel]\nid = "t"\nmetrics_port = 70000\napi_tokn = "x"\n')
    plan = build(load_dir(folder), folder, tmp_path / "data", {})
    assert sorted(e.key for e in plan.errors) == ["tunnel.api_tokn", "tunnel.metrics_port"]
    assert all(e.line is not None for e in plan.errors)
    (folder / "gateway.toml").write_text('[tunnel]\nid = "t"\napi_token = "secret"\n')
    plan = build(load_dir(folder), folder, tmp_path / "data", {})
    assert plan.errors[0].key == "tunnel.api_token" and "never put the API token" in plan.errors[0].message
    (folder / "gateway.toml").write_text('[tunnel]\nid = "t"\ncloudflared = "/nonexistent/cloudflared"\n')
    result = load_dir(folder)
    plan = build(result, folder, tmp_path / "data", {})
    assert plan.spec is None and "winget install --id Cloudflare.cloudflared" in (plan.missing or "")
    assert any("reserved" in e.message for e in [*result.errors, *plan.errors])


def test_write_config_atomic_only_on_change_keeps_previous(tmp_path):
    path = tmp_path / "t" / "config.yml"
    assert write_config(path, "one\n") is True
    assert write_config(path, "one\n") is False
    assert not path.with_name("config.yml.prev").exists()
    assert write_config(path, "two\n") is True
    assert path.read_text() == "two\n" and path.with_name("config.yml.prev").read_text() == "one\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yml", "config.yml.prev"]
