"""The pure checks agree with cloudflared (measured against cloudflared 2026.8.2, see
shared/notes/cloudflared-real.md): Go's regexp (RE2) with Go's messages, Go's duration
grammar, the Go types of nested originRequest values, and hostnames in their lower-case ASCII
(UTS-46) form, refusing what can never work."""

from __future__ import annotations

import pytest

from reconciler.tunnel.goregex import go_regex_error
from reconciler.tunnel.hostnames import HostnameError, ascii_hostname, check_works
from reconciler.tunnel.ingress import IngressError, Rule, check_rules
from reconciler.tunnel.origin import OriginError, ca_pool_error, check_origin, is_go_duration

OK = "http://127.0.0.1:8000"


@pytest.mark.parametrize("path, message", [
    # Python's re accepts these; Go (and cloudflared) refuse the whole file
    ("a++", "invalid nested repetition operator: `++`"),
    ("(?>x)", "invalid or unsupported Perl syntax: `(?>`"),
    ("(?x)a", "invalid or unsupported Perl syntax: `(?x`"),
    ("(?#c)", "invalid or unsupported Perl syntax: `(?#`"),
    ("(?=a)", "invalid or unsupported Perl syntax: `(?=`"),
    ("\\Z", "invalid escape sequence: `\\Z`"),
    ("\\u00e9", "invalid escape sequence: `\\u`"),
    ("a{1001}", "invalid repeat count: `{1001}`"),
    ("(a{1000}){1000}", "invalid repeat count: `{1000}`"),
    ("\\1", "invalid escape sequence: `\\1`"),
    ("\\C", "invalid escape sequence: `\\C`"),  # RE2 takes it, Go does not
    # messages as Go words them
    ("[z-a]", "invalid character class range: `z-a`"),
    ("\\e", "invalid escape sequence: `\\e`"),
    ("/(unclosed", "missing closing ): `/(unclosed`"),
    ("/a)", "unexpected ): `/a)`"),
    ("/[abc", "missing closing ]: `[abc`"),
    ("*a", "missing argument to repetition operator: `*`"),
    ("a\\", "trailing backslash at end of expression: ``"),
])
def test_go_refuses_with_gos_words(path, message):
    assert go_regex_error(path) == f"error parsing regexp: {message}"


@pytest.mark.parametrize("path", ["^/api/.*$", "\\z", "\\x{e9}", "\\Qa.b\\E", "[[:alpha:]]", "(?i)/Admin",
                                  "(?P<v>[0-9]+)", "(?<v>x)", "\\pL+", "x{1000}", "\\Q\\C\\E", "[\\]a]"])
def test_go_accepts(path):
    assert go_regex_error(path) is None


def test_a_bad_path_is_named_by_its_rule_number():
    with pytest.raises(IngressError) as err:
        check_rules([Rule("a.example.com", "", OK), Rule("b.example.com", "a++", OK), Rule()])
    assert str(err.value) == ("Rule #2 has an invalid regex: error parsing regexp: invalid nested repetition "
                              "operator: `++`")


@pytest.mark.parametrize("value, ok", [
    ("10s", True), ("1h30m", True), ("1.5s", True), (".5s", True), ("5.s", True), ("-5s", True), ("+5s", True),
    ("0", True), ("300ms", True), ("2us", True), ("2µs", True), ("1h2m3s4ms", True),
    ("s", False), (".s", False), ("5", False), ("", False), ("5 s", False), ("5sec", False), ("1d", False),
    ("--5s", False), (5, False), (True, False),
])
def test_go_duration_grammar(value, ok):
    assert is_go_duration(value) is ok


@pytest.mark.parametrize("origin, message", [
    ({"connectTimeout": "s"}, "cannot unmarshal !!str `s` into time.Duration"),
    ({"connectTimeout": 5}, "cannot unmarshal !!int `5` into time.Duration"),
    ({"noTLSVerify": "yes"}, "cannot unmarshal !!str `yes` into bool"),
    ({"proxyPort": -1}, "cannot unmarshal !!int `-1` into uint"),
    ({"keepAliveConnections": "x"}, "cannot unmarshal !!str `x` into int"),
    ({"ipRules": {"prefix": "x"}}, "cannot unmarshal !!map into []config.IngressIPRule"),
    ({"ipRules": ["x"]}, "cannot unmarshal !!str `x` into config.IngressIPRule"),
    ({"ipRules": [{"prefix": 10}]}, "cannot unmarshal !!int `10` into string"),
    ({"ipRules": [{"ports": "x"}]}, "cannot unmarshal !!str `x` into []int"),
    ({"ipRules": [{"ports": ["80"]}]}, "cannot unmarshal !!str `80` into int"),
    ({"ipRules": [{"allow": "true"}]}, "cannot unmarshal !!str `true` into bool"),
    ({"ipRules": [{"prefx": "10.0.0.0/8"}]}, "field prefx not found in type config.IngressIPRule"),
    ({"access": {"required": "yes"}}, "cannot unmarshal !!str `yes` into bool"),
    ({"access": {"teamName": ["a"]}}, "cannot unmarshal !!seq into string"),
    ({"access": {"audTag": "x"}}, "cannot unmarshal !!str `x` into []string"),
    ({"access": {"environment": 1}}, "cannot unmarshal !!int `1` into string"),
    ({"access": {"team": "a"}}, "field team not found in type config.AccessConfig"),
    ({"access": "on"}, "cannot unmarshal !!str `on` into config.AccessConfig"),
    ({"conectTimeout": "5s"}, "field conectTimeout not found in type config.OriginRequestConfig"),
    ({"access": {"required": True, "audTag": ["x"]}}, "access.TeamName cannot be blank when access.audTags are present"),
])
def test_origin_values_by_their_go_types(origin, message):
    with pytest.raises(OriginError) as err:
        check_origin(origin)
    assert str(err.value) == message


def test_good_nested_origin():
    check_origin({"ipRules": [{"prefix": "10.0.0.0/8", "ports": [80, 443], "allow": True}],
                  "access": {"required": True, "teamName": "t", "audTag": ["a"], "environment": "fed"},
                  "connectTimeout": "-1s", "proxyPort": 0, "keepAliveConnections": -1})


def test_missing_ca_pool_is_cloudflareds_run_error():
    assert ca_pool_error({"caPool": "/no/ca.pem"}, lambda p: False) == (
        "Error loading cert pool: unable to read the file /no/ca.pem for --origin-ca-pool: open /no/ca.pem: "
        "no such file or directory")
    assert ca_pool_error({"caPool": "/ca.pem"}, lambda p: True) is None
    assert ca_pool_error({}, lambda p: False) is None


@pytest.mark.parametrize("given, ascii", [
    ("Shop.Example.COM", "shop.example.com"), ("bücher.example", "xn--bcher-kva.example"),
    ("BÜCHER.example", "xn--bcher-kva.example"), ("faß.de", "xn--fa-hia.de"),  # IDNA 2008, not 2003's "fass"
    ("*.Bücher.example", "*.xn--bcher-kva.example"), ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("_acme.example.com", "_acme.example.com"), ("", ""), ("*", "*"),
])
def test_hostnames_in_lower_case_ascii(given, ascii):
    assert ascii_hostname(given) == ascii


@pytest.mark.parametrize("hostname, path, words", [
    ("*example.com", "", "only ever matches the literal text '*example.com'"),
    ("a" * 64 + ".example.com", "", "has a label of 64 characters"),
    ("*", "^/api", "matches every hostname, but there is no DNS name"),
    ("bad host.example.com", "", "is not a valid hostname"),
    ("a..example.com", "", "is not a valid hostname"),
])
def test_hostnames_that_can_never_work(hostname, path, words):
    with pytest.raises(HostnameError) as err:
        check_works(hostname, path)
    assert words in str(err.value)
