"""Signing in and out: the password, then the second step when the user has one (or always,
at the tunnel door): a code from the code app, a recovery code, or a passkey. A passkey alone
also signs in (it is two factors in itself: the device and the fingerprint / face / PIN).

Failures count per client address and per user (webview.security.RateLimit); past the limit
both are refused for a while, whatever the answer."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from reconciler.events import EventKind
from reconciler.store import accounts
from webview import auth, doors, passkeys, totp, users
from webview.render import daemon_of, redirect, render
from webview.security import COOKIE, PENDING_COOKIE, PENDING_TTL, is_https, sign, unsign


def safe_next(raw: str | None) -> str:
    target = unquote(raw or "/")
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _store(request: Request) -> Any:
    store = daemon_of(request).store
    assert store is not None
    return store


def wait_for(request: Request, name: str) -> float:
    """Seconds until this address and this user may try again (0: now)."""
    state = request.app.state
    return max(state.limit_ip.retry_after(doors.client_ip(request)), state.limit_user.retry_after(name.lower()))


class Audit:
    """Records a sign-in matter in the gateway's history (the events page shows it), saying
    where it came from: the door and the client's address."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def event(self, kind: EventKind, reason: str, **detail: Any) -> None:
        request = self.request
        where = "through the tunnel" if doors.is_tunnel(request) else "on this laptop"
        detail = {"door": doors.door_of(request.scope), "ip": doors.client_ip(request), **detail}
        user = detail.get("user")
        daemon_of(request).rt.event(kind, None, f"{reason} ({where}, from {detail['ip']})",
                                    actor=f"web:{user}" if user else "web", detail=detail)


def failed(request: Request, name: str) -> None:
    """One wrong answer from this address (and for this user); says so once when it locks them out."""
    state, ip = request.app.state, doors.client_ip(request)
    for limit, key, who in ((state.limit_ip, ip, f"the address {ip}"), (state.limit_user, name.lower(), name)):
        if not key:
            continue
        was_locked = limit.retry_after(key) > 0
        limit.fail(key)
        if not was_locked and limit.retry_after(key) > 0:
            minutes = max(1, round(limit.window / 60))
            Audit(request).event(EventKind.SIGN_IN_LOCKED, f"too many wrong answers: {who} may not sign in for "
                   f"{minutes} min", user=name or None, locked=who)


def too_many(wait: float) -> str:
    return f"Too many failed attempts. Try again in {wait:.0f} s."


async def open_session(request: Request, user: str, second_factor: bool, target: str, how: str) -> Response:
    """Sign `user` in (this browser), say so in the events, and go to `target`."""
    request.app.state.limit_user.clear(user.lower())
    if how:
        Audit(request).event(EventKind.SIGNED_IN, f"{user} signed in with {how}", user=user, how=how)
    token = await users.new_session(_store(request), user, second_factor, doors.door_of(request.scope))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(users.SESSION_TTL.total_seconds()), path="/", httponly=True,
                        samesite="lax", secure=is_https(request))
    response.delete_cookie(PENDING_COOKIE, path="/")
    return response


def _pending(request: Request) -> dict[str, Any] | None:
    found = unsign(request.app.state.secret, request.cookies.get(PENDING_COOKIE, ""))
    if found is None or found.get("door") != doors.door_of(request.scope):
        return None
    return found


async def _login_page(request: Request, status: int = 200, **context: Any) -> Response:
    context.setdefault("next", safe_next(request.query_params.get("next")))
    return render(request, "login.html", status=status, tunnel=doors.is_tunnel(request),
                  passkeys_here=passkeys.place(request) is not None, **context)


async def login_page(request: Request) -> Response:
    if auth.has(request, auth.PAGE):
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    try:
        no_users = await users.count_users(_store(request)) == 0
    except Exception:  # noqa: BLE001 - the database is down; the sign-in attempt will say so
        no_users = False
    if no_users and auth.has(request, auth.LOCAL):
        return RedirectResponse("/setup", status_code=303)
    return await _login_page(request, not_set_up=no_users)


async def login_post(request: Request) -> Response:
    form = await request.form()
    name, password = users.normal_name(str(form.get("username", ""))), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    wait = wait_for(request, name)
    if wait > 0:
        return await _login_page(request, 429, next=target, username=name, error=too_many(wait))
    store = _store(request)
    try:
        ok = bool(name) and await users.verify(store, name, password)
        factors = await accounts.second_factors(store, name) if ok else {}
    except Exception as exc:  # noqa: BLE001 - PostgreSQL is away: say so, count nothing against the user
        return await _login_page(request, 503, next=target, username=name,
                                 error=f"The database is unreachable, so nobody can sign in right now ({exc}).")
    if not ok:
        failed(request, name)
        return await _login_page(request, 401, next=target, username=name, error="Wrong user name or password.")
    has_factor = bool(factors["totp"] or factors["passkeys"])
    if not has_factor and doors.is_tunnel(request):
        return await _login_page(request, 403, next=target, username=name, error=(
            "Signing in from outside the laptop needs a second step, and you have not set one up yet. "
            "On the laptop, open Security and turn on a code app or add a passkey."))
    if not has_factor:
        return await open_session(request, name, False, target, "a password")
    pending = sign(request.app.state.secret, {"user": name, "next": target, "door": doors.door_of(request.scope),
                                              "exp": time.time() + PENDING_TTL})
    response = RedirectResponse("/login/verify", status_code=303)
    response.set_cookie(PENDING_COOKIE, pending, max_age=PENDING_TTL, path="/", httponly=True, samesite="lax",
                        secure=is_https(request))
    return response


async def verify_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    pending = _pending(request)
    if pending is None:
        return redirect(request, "/login", "Sign in again: that took too long.")
    user = str(pending["user"])
    factors = await accounts.second_factors(_store(request), user)
    return render(request, "login_verify.html", status=status, who=user, totp=factors["totp"],
                  passkeys=factors["passkeys"], recovery=factors["recovery"],
                  passkeys_here=passkeys.place(request) is not None, error=error)


async def verify_post(request: Request) -> Response:
    pending = _pending(request)
    if pending is None:
        return redirect(request, "/login", "Sign in again: that took too long.")
    user, target = str(pending["user"]), safe_next(str(pending["next"]))
    wait = wait_for(request, user)
    if wait > 0:
        return await verify_page(request, 429, too_many(wait))
    form = await request.form()
    code = str(form.get("code", "")).strip()
    store = _store(request)
    digits = code.replace(" ", "")
    ok = await (totp.check(store, user, digits) if digits.isdigit() else totp.use_recovery(store, user, code))
    if not ok:
        failed(request, user)
        return await verify_page(request, 401, "That code is not right, or it was already used. "
                                               "Codes change every 30 seconds: try the one your app shows now.")
    return await open_session(request, user, True, target,
                              "a password and the code app" if digits.isdigit() else "a password and a recovery code")


async def passkey_options(request: Request) -> Response:
    """Options for signing in with a passkey here: after the password (that user's passkeys),
    or on its own (any passkey of this address)."""
    pending = _pending(request)
    user = str(pending["user"]) if pending else None
    wait = wait_for(request, user or "")
    if wait > 0:
        return JSONResponse({"error": too_many(wait)}, status_code=429)
    mine = await accounts.passkeys_of(_store(request), user) if user else []
    try:
        options, key = passkeys.signin_options(request, user, mine)
    except passkeys.PasskeyError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    response = Response(options, media_type="application/json")
    response.set_cookie(passkeys.CHALLENGE_COOKIE, key, max_age=int(passkeys.CHALLENGE_TTL), path="/",
                        httponly=True, samesite="strict", secure=is_https(request))
    return response


async def passkey_post(request: Request) -> Response:
    pending = _pending(request)
    claimed = str(pending["user"]) if pending else ""
    wait = wait_for(request, claimed)
    if wait > 0:
        return JSONResponse({"error": too_many(wait)}, status_code=429)
    try:
        body = await request.json()
        user = await passkeys.authenticate(request, _store(request), body)
    except (ValueError, passkeys.PasskeyError) as exc:
        failed(request, claimed)
        return JSONResponse({"error": f"That passkey did not work: {exc}"}, status_code=401)
    target = safe_next(str(pending["next"])) if pending else "/"
    response = await open_session(request, user, True, target, "a password and a passkey" if pending else "a passkey")
    answer = JSONResponse({"next": target})
    answer.raw_headers += [h for h in response.raw_headers if h[0] == b"set-cookie"]
    return answer


@auth.action
async def logout_post(request: Request) -> Response:
    token = request.cookies.get(COOKIE)
    store = daemon_of(request).store
    if token and store is not None:
        await users.end_session(store, token)
    response = redirect(request, "/login", "Signed out.")
    response.delete_cookie(COOKIE, path="/")
    return response


def login_url(target: str) -> str:
    return f"/login?next={quote(target)}"


routes = [
    Route("/login", login_page),
    Route("/login", login_post, methods=["POST"]),
    Route("/login/verify", verify_page),
    Route("/login/verify", verify_post, methods=["POST"]),
    Route("/login/passkey/options", passkey_options, methods=["POST"]),
    Route("/login/passkey", passkey_post, methods=["POST"]),
    Route("/logout", logout_post, methods=["POST"]),
]
