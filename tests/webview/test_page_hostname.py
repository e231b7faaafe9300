"""The security page sets `[web] hostname` (comments kept), and the tunnel then routes that
name to the page's tunnel door."""

from __future__ import annotations

from tests.fix_gateway import Gateway
from tests.webview.conftest import PASSWORD, USER, cli, signed_in


def test_the_security_page_publishes_the_page_at_a_hostname(gateway: Gateway):
    toml = gateway.config_dir / "gateway.toml"
    toml.write_text("# my settings\n" + toml.read_text())
    gateway.start()
    assert cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    http = signed_in(gateway)
    done = http.post("/security/hostname", data={"hostname": "https://Gateway.Example.com/", "csrf": http.csrf})  # type: ignore[attr-defined]
    assert done.status_code in (200, 303)
    text = toml.read_text()
    assert text.startswith("# my settings\n") and 'hostname = "gateway.example.com"' in text
    page = http.get("/security").text
    assert "https://gateway.example.com" in page
    refused = http.post("/security/hostname", data={"hostname": "not a name!", "csrf": http.csrf},  # type: ignore[attr-defined]
                        follow_redirects=True)
    assert "Not saved" in refused.text and 'hostname = "gateway.example.com"' in toml.read_text()
    http.post("/security/hostname", data={"hostname": "", "csrf": http.csrf})  # type: ignore[attr-defined]
    assert "hostname" not in toml.read_text()
    http.close()
