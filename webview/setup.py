"""First run in the browser: with nobody set up yet, the page asks for the owner (name,
password twice, a strength hint), then offers the optional steps (alerts, Cloudflare, start
at boot), each skippable. Offered only at the local door to a browser on this machine (the
scope "local", webview.infra.auth); through the tunnel, never. Two setup forms sent at once make
one owner (accounts.upsert_user locks the table)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reconciler.core.events import EventKind
from reconciler.store import accounts
from reconciler.tunnel.status import tunnel_view
from webview import settings_ops, signin
from webview.infra import auth, users
from webview.infra.page import gateway_of, page_of
from webview.infra.render import render

COMMON = frozenset({"password", "12345678", "123456789", "1234567890", "qwertyuiop", "iloveyou", "password1",
                    "11111111", "abcdefgh", "letmein1", "sunshine", "football", "welcome1", "admin123"})
# The optional steps, in order: (key, title, why, button, the page that does it)
STEPS = [
    ("alerts", "Alerts", "Get a message on your phone when a server stops working.", "Set up alerts",
     "/settings/alerts"),
    ("tunnel", "Reach it from your phone", "Connect Cloudflare so this page and your servers can be opened from "
     "anywhere.", "Connect Cloudflare", "/cloudflare"),
    ("boot", "Start when the laptop starts", "The gateway and your servers come back by themselves after a "
     "restart.", "Turn on start at boot", "/settings/boot"),
    ("second", "A second step when you sign in", "A code app or a passkey (your fingerprint or face) keeps others "
     "out, even if they learn your password. It is needed to sign in from outside this laptop.",
     "Set up a second step", "/security"),
]


def strength(password: str, name: str = "") -> tuple[str, str]:
    """(level, words): "weak" is refused, "ok" and "strong" are accepted."""
    lowered = password.lower()
    if len(password) < users.MIN_PASSWORD:
        return "weak", f"Too short: use at least {users.MIN_PASSWORD} characters."
    if lowered in COMMON or (name and name.lower() in lowered) or len(set(password)) < 4:
        return "weak", "Too easy to guess: avoid your name and common passwords."
    kinds = sum(any(test(c) for c in password) for test in (str.islower, str.isupper, str.isdigit,
                                                             lambda c: not c.isalnum()))
    if len(password) >= 14 or (len(password) >= 10 and kinds >= 3):
        return "strong", "Strong."
    return "ok", "Good enough. Longer is stronger: a few unrelated words work well."


async def _nobody(request: Request) -> bool:
    store = gateway_of(request).store
    return store is not None and await users.count_users(store) == 0


@auth.local
async def setup_page(request: Request) -> Response:
    if not await _nobody(request):
        return RedirectResponse("/login", status_code=303)
    return render(request, "setup.html", name="", error=None, error_at="", kept="", min_length=users.MIN_PASSWORD)


@auth.local  # the tunnel door, or not from this machine: never
async def setup_post(request: Request) -> Response:
    if not await _nobody(request):
        return RedirectResponse("/login", status_code=303)
    form = await request.form()
    name, password, again = (str(form.get(k, "")) for k in ("name", "password", "password2"))
    name = users.normal_name(name)
    error, error_at = None, ""
    level, words = strength(password, name)
    try:
        users.check_name(name)
    except users.UserError as exc:
        error, error_at = str(exc)[0].upper() + str(exc)[1:] + ".", "name"
    if error is None and password != again:
        error, error_at = "The two passwords are not the same: type them again.", "password"
    elif error is None and level == "weak":
        error, error_at = words, "password"
    if error is not None:
        # a mistake in the name leaves the two passwords as typed (this screen is only ever
        # shown to this laptop's own browser, and the answer is not stored: no-store)
        kept = password if error_at == "name" and password == again and level != "weak" else ""
        return render(request, "setup.html", status=400, name=name, error=error, error_at=error_at, kept=kept,
                      min_length=users.MIN_PASSWORD)
    store = gateway_of(request).store
    assert store is not None
    try:
        await users.set_user(store, name, password, sessions=page_of(request).sessions, first=True)
    except users.UserError:  # someone else finished setup a moment ago
        return RedirectResponse("/login", status_code=303)
    signin.Audit(request).event(EventKind.ACCOUNT_CHANGED, f"{name} set up the gateway: the owner", user=name,
                  change="owner created")
    return await signin.open_session(request, name, False, "/setup/next", "")


async def progress(request: Request, user: str) -> dict[str, str | None]:
    """Each step's state in words when it is done (None: not yet), from what is in force."""
    daemon = gateway_of(request)
    result = daemon.reconciler.result
    urls = list(dict(result.settings.notify).get("urls") or []) if result else []
    tunnel = tunnel_view(daemon.rt).get("state")
    boot, _ = await settings_ops.boot_state(daemon)
    store = daemon.store
    factors = await accounts.second_factors(store, user) if store is not None else {}
    second = [w for w, on in (("a code app", factors.get("totp")), ("a passkey", factors.get("passkeys"))) if on]
    return {
        "alerts": f"On: alerts go to {len(urls)} address{'es' if len(urls) > 1 else ''}." if urls else None,
        "tunnel": None if tunnel in (None, "not configured", "config error") else f"Connected (the tunnel is {tunnel}).",
        "boot": "On: it starts by itself." if boot else None,
        "second": f"On: {' and '.join(second)}." if second else None,
    }


@auth.page
async def next_steps(request: Request) -> Response:
    user = auth.user_name(request)
    done = await progress(request, user)
    steps = [{"key": key, "title": t, "why": why, "button": button, "href": href, "done": done[key]}
             for key, t, why, button, href in STEPS]
    return render(request, "setup_next.html", steps=steps, done=sum(bool(s["done"]) for s in steps))


routes = [
    Route("/setup", setup_page),
    Route("/setup", setup_post, methods=["POST"]),
    Route("/setup/next", next_steps),
]
