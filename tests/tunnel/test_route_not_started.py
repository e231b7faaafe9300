"""A route cloudflared cannot start (`Error starting local service http://127.0.0.1:PORT: ...`,
e.g. its origin's caPool cannot be read) takes `tunnel run` down for every hostname. The
gateway leaves that route out and names it on its server's file; the other routes keep
running: when it comes with new routes the serving connector is never restarted onto it, and
when the connector starts with it, it starts again without it."""

from __future__ import annotations

from tests.tunnel.test_connector import wait
from tests.tunnel.test_handover_requests import HOST, Visitor, _free_port, settled, web_file, world  # noqa: F401

SHOP = "shop.example.com"


def errors(gw) -> list[str]:  # noqa: ANN001 - the Gateway fixture
    return list(gw.client.status()["gateway"]["config_errors"])


def test_a_route_that_cloudflared_cannot_start_is_left_out_and_named(world):  # noqa: F811
    gw, edge, config_yml = world
    gw.write("web", web_file(0))
    gw.start()
    settled(gw, edge, config_yml, "0")
    first = gw.status()["cloudflared"]["pid"]
    port = _free_port()
    (config_yml.parent.parent / "bin" / "unstartable").write_text(f"http://127.0.0.1:{port}\n")
    with Visitor(edge) as visitor:
        wait(lambda: visitor.ok > 5, what="answers before")
        gw.write("shop", web_file(0, str(port), host=SHOP))
        wait(lambda: any("shop.toml" in e for e in errors(gw)), timeout=60, what="the shop's route named")
        seen = visitor.ok
        wait(lambda: visitor.ok > seen + 10, what="answers after")
    assert not visitor.failures, visitor.failures[:5]
    assert gw.status()["cloudflared"]["pid"] == first  # never restarted onto the route it cannot start
    [said] = [e for e in errors(gw) if "shop.toml" in e]
    assert "domain.service: cloudflared could not start this route: Error starting local service " \
           f"http://127.0.0.1:{port}: Error loading cert pool" in said and "it is left out (the others run)" in said
    assert SHOP not in config_yml.read_text() and HOST in config_yml.read_text()

    # a gateway that starts with it: the connector exits on it, and starts again without it
    assert gw.stop() == 0
    gw.start()
    gw.wait_phase("cloudflared", "running", timeout=60)
    wait(lambda: edge.get(HOST)[0] == 200, timeout=60, what="the other routes through the tunnel")
    assert SHOP not in config_yml.read_text()
    assert any("shop.toml" in e and "could not start this route" in e for e in errors(gw))
