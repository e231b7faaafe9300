"""Numbers typed with other digits (issue 25, item 8): `²` is a digit to str.isdigit() but not
to int(), and a code of such digits cannot be compared in constant time; every field that
takes a number answers with its own words, never a 500, and nothing is written."""

from __future__ import annotations

import httpx

from tests.fix_gateway import Gateway
from tests.webview.test_forms import post

ODD = ("8²", "²", "٨٠٨٠", "８０８０")  # superscript two; Arabic-Indic and full-width digits (int() reads those)


def test_the_port_range_field(web: Gateway, http: httpx.Client) -> None:
    before = (web.config_dir / "gateway.toml").read_text()
    for value in ("2²000-29999", "20000-2999²", *ODD):
        r = post(http, "/settings/ports", range=value)
        assert r.status_code == 422 and "Write two port numbers" in r.text, (value, r.status_code)
    assert (web.config_dir / "gateway.toml").read_text() == before


def test_the_backups_keep_field(web: Gateway, http: httpx.Client) -> None:
    before = (web.config_dir / "gateway.toml").read_text()
    for value in ODD:
        r = post(http, "/settings/backups/schedule", every="1d", keep=value)
        assert r.status_code == 422 and "Keep: write how many backups to keep" in r.text, (value, r.status_code)
    assert (web.config_dir / "gateway.toml").read_text() == before


def test_the_port_field_of_the_form_and_its_check(web: Gateway, http: httpx.Client) -> None:
    for value in ODD:
        r = http.get("/check-port", params={"port": value})
        assert r.status_code == 200 and "is not a port (1-65535)" in r.text, (value, r.status_code)
        r = post(http, "/new", name="odd", command="python -m http.server {port}", port=value, action="check-port")
        assert r.status_code == 200 and "is not a port (1-65535)" in r.text, (value, r.status_code)
        r = post(http, "/new", name="odd", command="python -m http.server {port}", port=value)
        assert r.status_code == 422 and "port" in r.text, (value, r.status_code)
        r = post(http, "/servers/alpha/edit", command="python -m http.server {port} --bind 127.0.0.1", port=value)
        assert r.status_code == 422, (value, r.status_code)
    assert not (web.config_dir / "odd.toml").exists()
    assert 'port = "auto"' in (web.config_dir / "alpha.toml").read_text()


def test_a_code_of_other_digits_is_just_wrong(web: Gateway, http: httpx.Client) -> None:
    assert http.get("/security/totp").status_code == 200  # a code app being set up: its secret waits
    for value in ("²²²²²²", "٠٠٠٠٠٠", "１２３４５６"):
        r = post(http, "/security/totp", code=value)
        assert r.status_code == 400 and "That code is not right" in r.text, (value, r.status_code)


def test_query_numbers(web: Gateway, http: httpx.Client) -> None:
    token = {"authorization": "Bearer " + (web.data_dir / "api-token").read_text().strip()}
    with httpx.Client(base_url=str(http.base_url), trust_env=False, headers=token) as api:
        r = api.get("/api/events", params={"limit": "²"})
        assert r.status_code == 400 and r.json() == {"error": "limit must be a number"}
    for path in ("/events?since=²", "/servers/alpha?range=²", "/servers/alpha/log?q=²"):
        assert http.get(path).status_code < 500, path


def test_the_same_digits_in_gateway_toml_and_the_environment(tmp_path, monkeypatch) -> None:
    """The settings file and GATEWAY_LISTEN say what is wrong in words too (they raised
    `invalid literal for int()`, or a traceback at start)."""
    import pytest

    from reconciler.engine.config import load_dir
    from reconciler.settings import SettingsError, resolve

    (tmp_path / "gateway.toml").write_text('[ports]\nrange = "2²000-29999"\n[host]\ninternet_check = "1.1.1.1:44³"\n',
                                          encoding="utf-8")  # what a settings file is (Windows' default is cp1252)
    errors = [str(e) for e in load_dir(tmp_path).errors]
    assert len(errors) == 1 and "'2²000-29999' is not a port range" in errors[0], errors
    (tmp_path / "gateway.toml").write_text('[host]\ninternet_check = "1.1.1.1:44³"\n', encoding="utf-8")
    errors = [str(e) for e in load_dir(tmp_path).errors]
    assert len(errors) == 1 and "must be host:port" in errors[0], errors
    (tmp_path / "gateway.toml").unlink()
    monkeypatch.setenv("GATEWAY_LISTEN", "127.0.0.1:876²")
    with pytest.raises(SettingsError, match="is not HOST:PORT"):
        assert resolve(str(tmp_path), str(tmp_path / "data")).host_port
