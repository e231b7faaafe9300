"""The overview's model: every server's card (its view plus its plain words), servers that
need attention first, the counts the live stream keeps current, and config errors named by
server. Shared by the page and the stream, so both say the same; `Cards` is their memory."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.core.spec import NAME_PATTERN
from reconciler.platform.fsutil import server_log
from webview.infra.availability import availability_words
from webview.infra.render import _mb, fragment
from webview.infra.views import gateway_view, server_names, server_view
from webview.infra.words import server_words

if TYPE_CHECKING:
    from webview.infra.gateway import Gateway

NAME_RE = re.compile(NAME_PATTERN)
CSRF_SLOT = "csrf-slot-5f0c2a"  # in the cached cards; replaced by each visitor's own token
TAIL_BYTES = 4096  # the end of a crashing server's log, for its last printed lines
CRASHING = ("backoff", "exited", "error", "stopped")


def tail_lines(path: Path, size: int = TAIL_BYTES) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            end = fh.tell()
            fh.seek(max(0, end - size))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    rows = text.splitlines()
    return rows[1:] if end > size else rows


VOLATILE = ("uptime_s", "next_try_in_s", "cpu_percent", "rss_bytes", "started_at", "latency_ms", "uptime_pct",
            "since_epoch", "next_try_at_epoch", "a", "v")  # a card's moving figures: they tick in the browser
VOLATILE_WORDS = ("wait", "status", "countdown")


def card_version(view: dict[str, Any]) -> str:
    """What a card says apart from its moving figures, as a short digest (`data-v`): the page
    and the live stream give the same card the same version, so a stream that (re)connects
    does not put back a card the page already shows (with figures from when it was cached)."""
    words = tuple((k, str(v)) for k, v in view["w"].items() if k not in VOLATILE_WORDS)
    key = tuple((k, str(v)) for k, v in view.items() if k not in VOLATILE and k != "w") + words
    return hashlib.blake2s(repr(key).encode(), digest_size=8).hexdigest()


def host_words(host: Mapping[str, Any]) -> dict[str, Any]:
    """The host line's figures as the page shows them (also sent by the live stream each time
    they move, so a page left open is not stuck on the figures of its load)."""
    def pct(key: str) -> str:
        return f"{host[key]:.0f} %" if host.get(key) is not None else "-"

    free = host.get("disk_free_bytes")
    battery = host.get("battery_percent")
    internet = host.get("internet_ok")
    return {
        "cpu": pct("cpu_percent"), "mem": pct("mem_percent"),
        "disk": pct("disk_percent") + (f" ({free / 2**30:.1f} GB free)" if free is not None else ""),
        "internet": None if internet is None else "Internet OK" if internet else "No internet",
        "internet_ok": internet,
        "battery": None if battery is None else f"Battery {battery} %" + (" on AC" if host.get("on_ac") else " on battery"),
    }


def card_view(daemon: Gateway, name: str) -> dict[str, Any]:
    """One card: the server's view and `w`, its words (with the last lines it printed when it
    is down: a small read of its log's end)."""
    view = server_view(daemon, name)
    result = daemon.reconciler.result
    view["broken_new"] = not view["in_config"] and name not in daemon.rt.states and result is not None and any(
        Path(e.path).stem == name for e in result.errors)
    if view["broken_new"]:
        view["config_stale"] = True  # the words then say its file has a mistake and nothing was started
    log = tail_lines(server_log(daemon.settings.data_dir, name)) if view["phase"] in CRASHING \
        and view["last_exit"] else []
    view["w"] = server_words(view, log)
    view["a"] = availability_words(view["uptime_pct"], public=bool(view["domain"]))
    if view["broken_new"]:
        view["w"].update(head="Not started: its file has a mistake", status="Not started: its file has a mistake",
                         tone="cant-start", attention=True)
    view["v"] = card_version(view)
    return view


def all_names(daemon: Gateway) -> list[str]:
    """Every server the page shows: the loaded and the running ones, and a new file that does
    not load yet (its card says so; nothing of it runs)."""
    names = set(server_names(daemon))
    result = daemon.reconciler.result
    for e in result.errors if result else ():
        stem = Path(e.path).stem
        if Path(e.path).name != "gateway.toml" and NAME_RE.match(stem):
            names.add(stem)
    return sorted(names)


def config_problems(daemon: Gateway) -> list[dict[str, Any]]:
    """Each config error with the server it belongs to and whether its last good version runs."""
    result = daemon.reconciler.result
    if result is None:
        return []
    out = []
    for e in result.errors:
        stem = Path(e.path).stem
        server = None if Path(e.path).name == "gateway.toml" else stem
        where = f"line {e.line}" if e.line else ""
        out.append({
            "file": Path(e.path).name, "server": server, "where": where, "message": e.message, "key": e.key,
            "kept": server is not None and server in result.specs, "text": str(e),
        })
    return out


def counts(cards: list[dict[str, Any]]) -> dict[str, int]:
    return {"total": len(cards), "running": sum(c["phase"] == "running" for c in cards),
            "attention": sum(bool(c["w"]["attention"]) for c in cards),
            "off": sum(c["phase"] == "stopped" and not c["w"]["attention"] for c in cards)}


def _order(card: dict[str, Any]) -> tuple[int, str]:
    return (0 if card["w"]["attention"] else 1, card["name"])


def overview_model(daemon: Gateway, group: str | None, tag: str | None) -> dict[str, Any]:
    servers = [card_view(daemon, n) for n in all_names(daemon)]
    shown = [s for s in servers if (group is None or s["group"] == group) and (tag is None or tag in s["tags"])]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in sorted(shown, key=_order):
        groups[s["group"] or ""].append(s)
    # groups holding a server that needs attention first, then by name
    ordered = sorted(groups.items(), key=lambda kv: (not any(c["w"]["attention"] for c in kv[1]), kv[0]))
    return {
        "gateway": gateway_view(daemon), "host": daemon.figures.host, "hw": host_words(daemon.figures.host), "groups": ordered,
        "all_groups": sorted({s["group"] for s in servers if s["group"]}),
        "all_tags": sorted({t for s in servers for t in s["tags"]}), "group": group, "tag": tag,
        "counts": counts(servers), "problems": config_problems(daemon),
        "attention": [s["name"] for s in sorted(servers, key=_order) if s["w"]["attention"]],
        # "Stop all" names what it stops: every server but the gateway's own parts (the tunnel)
        "stoppable": [s["name"] for s in servers if not s["own"] and s["phase"] in ("starting", "running")],
        "own_names": [s["name"] for s in servers if s["own"]],
    }


def sse(event: str, data: str) -> str:
    """One server-sent event (webview.stream)."""
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in data.splitlines()) + "\n"


def stats(cards: list[dict[str, Any]], host: Mapping[str, Any]) -> str:
    """What the live stream says every few seconds: the counts, who needs attention, the host's
    and each server's figures."""
    c = counts(cards)
    return json.dumps({
        **c, "attention_names": [s["name"] for s in cards if s["w"]["attention"]], "host": host_words(host),
        "servers": {s["name"]: {"cpu": f"{s['cpu_percent']:.0f} %" if s["cpu_percent"] is not None else "-",
                                "mem": _mb(s["rss_bytes"])} for s in cards},
    })


CardKey = tuple[Any, ...]  # what a card says apart from its moving figures (its version)


class Cards:
    """The page's memory of its cards (one per app, held by webview.infra.page.Page): rendered at most
    once per state change and second (uptimes tick), however many ask: 100 cards take
    milliseconds to render, 50 phones with the live page open ask every few seconds."""

    def __init__(self) -> None:
        # the overview's model and cards' HTML, per (group, tag, door): (changed, second, model, html)
        self._overview: dict[tuple[str | None, str | None, str], tuple[object, int, dict[str, Any], str]] = {}
        # the live stream's: one card's HTML per (name, back, door), as of its version
        self._rendered: dict[tuple[str, str, str], tuple[CardKey, str]] = {}
        # every server's card view and the stats message of this second and state
        self._now: tuple[tuple[object, int], list[tuple[dict[str, Any], CardKey]], str] | None = None

    def overview(self, daemon: Gateway, door: str, group: str | None, tag: str | None) -> tuple[dict[str, Any], str]:
        """The overview's model and its cards' HTML (the tunnel door's cards offer no way to cut
        the tunnel)."""
        key = (group, tag, door)
        changed, second = daemon.rt.changed, int(time.monotonic())
        hit = self._overview.get(key)
        if hit is not None and hit[0] is changed and hit[1] == second:
            return hit[2], hit[3]
        model = overview_model(daemon, group, tag)
        html = fragment("_servers.html", groups=model["groups"], csrf=CSRF_SLOT, door=door)
        if len(self._overview) > 100:
            self._overview.clear()
        self._overview[key] = (changed, second, model, html)
        return model, html

    def card(self, view: dict[str, Any], key: CardKey, back: str, door: str = "local") -> str:
        """One card's HTML, rendered once per change however many streams send it (per door: the
        tunnel door's cards offer no way to cut the tunnel)."""
        slot = (view["name"], back, door)
        hit = self._rendered.get(slot)
        if hit is None or hit[0] != key:
            if len(self._rendered) > 5000:
                self._rendered.clear()
            hit = self._rendered[slot] = (key, fragment("_server_row.html", s=view, csrf=CSRF_SLOT, back=back,
                                                        door=door))
        return hit[1]

    def now(self, daemon: Gateway) -> tuple[list[tuple[dict[str, Any], CardKey]], str]:
        """Every server's card view and the stats message, built at most once per state change and
        second however many streams are open (50 phones: one build, not fifty)."""
        key = (daemon.rt.changed, int(time.monotonic()))
        if self._now is None or self._now[0] != key:
            cards = [card_view(daemon, name) for name in all_names(daemon)]
            self._now = (key, [(view, (view["v"],)) for view in cards], sse("stats", stats(cards, daemon.figures.host)))
        return self._now[1], self._now[2]
