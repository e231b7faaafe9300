"""Signing in and out: the password, then the second step when the user has one (or always,
at the tunnel door): a code from the code app, a recovery code, or a passkey. A passkey alone
also signs in (it is two factors in itself: the device and the fingerprint / face / PIN).

Wrong answers count per door and per address, and a second step's also per door and user
(webview.infra.lockout); past a limit that address (or that user's second step, at that door) is
refused for a while, whatever the answer."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from reconciler.core.digits import plain_digits
from reconciler.core.events import EventKind
from reconciler.core.spec import quote as quoted
from reconciler.store import Store, accounts
from webview.infra import auth, cookies, doors, lockout, passkeys, totp, users
from webview.infra.lockout import LockOuts
from webview.infra.page import gateway_of, page_of
from webview.infra.render import redirect, render
from webview.infra.security import PENDING_TTL, sign, unsign


def safe_next(raw: str | None) -> str:
    target = unquote(raw or "/")
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _store(request: Request) -> Store:
    store = gateway_of(request).store
    assert store is not None
    return store


def wait_for(request: Request, second_step_user: str | None = None) -> float:
    """Seconds until this address may try again at this door (and, at the second step, this
    user); 0: now."""
    locks: LockOuts = page_of(request).lockouts
    return locks.wait(doors.door_of(request.scope), doors.client_ip(request), second_step_user)


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
        gateway_of(request).rt.event(kind, None, f"{reason} ({where}, from {detail['ip']})",
                                    actor=f"web:{user}" if user else "web", detail=detail)


def failed(request: Request, name: str, second_step: bool = False) -> None:
    """One wrong answer from this address at this door (at the second step: also for this user
    at this door); says so once when it locks one of them out. `name` is what was typed as the
    user name: it is quoted, never written as it came (a line break in it forged log lines)."""
    locks: LockOuts = page_of(request).lockouts
    door, ip = doors.door_of(request.scope), doors.client_ip(request)
    tried = f" (the last try was as {quote_name(name)})" if name else ""
    for what in locks.fail(door, ip, name if second_step else None):
        if what == "address":
            key = lockout.address_key(ip)
            who = f"the addresses {key}" if "/" in key else f"the address {key}"
            minutes = max(1, round(locks.address.window / 60))
            Audit(request).event(EventKind.SIGN_IN_LOCKED, f"too many wrong answers: {who} may not try to sign in "
                                 f"for {minutes} min{tried}", tried=name or None, locked=key)
        else:
            minutes = max(1, round(locks.second_step.window / 60))
            Audit(request).event(EventKind.SIGN_IN_LOCKED, f"too many wrong codes for {quote_name(name)}: their "
                                 f"second step is closed here for {minutes} min", user=name, locked=name)


def quote_name(name: str) -> str:
    """A typed user name for the history and the log: as typed when it is a plain one, else
    repr-quoted (line breaks and other control characters escaped) and cut when long."""
    try:
        return users.check_name(name)  # a name as names are made (no line break, no control character)
    except users.UserError:
        return quoted(name)


def too_many(wait: float) -> str:
    return f"Too many failed attempts. Try again in {wait:.0f} s."


async def open_session(request: Request, user: str, second_factor: bool, target: str, how: str) -> Response:
    """Sign `user` in (this browser), say so in the events, and go to `target`."""
    page_of(request).lockouts.signed_in(doors.door_of(request.scope), user)
    if how:
        Audit(request).event(EventKind.SIGNED_IN, f"{user} signed in with {how}", user=user, how=how)
    token = await users.new_session(_store(request), user, second_factor, doors.door_of(request.scope))
    response = RedirectResponse(target, status_code=303)
    cookies.put(response, request, cookies.SESSION, token, max_age=int(users.SESSION_TTL.total_seconds()))
    cookies.drop(response, request, cookies.PENDING)
    return response


def _pending(request: Request) -> dict[str, Any] | None:
    found = unsign(page_of(request).secret, cookies.get(request, cookies.PENDING))
    if found is None or found.get("door") != doors.door_of(request.scope):
        return None
    return found


async def _login_page(request: Request, status: int = 200, **context: Any) -> Response:
    context.setdefault("next", safe_next(request.query_params.get("next")))
    return render(request, "login.html", status=status, tunnel=doors.is_tunnel(request),
                  passkeys_here=passkeys.place(request) is not None, **context)


@auth.anyone
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


@auth.anyone
async def login_post(request: Request) -> Response:
    form = await request.form()
    name, password = users.normal_name(str(form.get("username", ""))), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    wait = wait_for(request)
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
    pending = sign(page_of(request).secret, {"user": name, "next": target, "door": doors.door_of(request.scope),
                                              "exp": time.time() + PENDING_TTL})
    response = RedirectResponse("/login/verify", status_code=303)
    cookies.put(response, request, cookies.PENDING, pending, max_age=PENDING_TTL)
    return response


@auth.anyone
async def verify_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    pending = _pending(request)
    if pending is None:
        return redirect(request, "/login", "Sign in again: that took too long.")
    user = str(pending["user"])
    factors = await accounts.second_factors(_store(request), user)
    return render(request, "login_verify.html", status=status, who=user, totp=factors["totp"],
                  passkeys=factors["passkeys"], recovery=factors["recovery"],
                  passkeys_here=passkeys.place(request) is not None, error=error)


@auth.anyone
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
    ok = await (totp.check(store, page_of(request).box, user, digits) if plain_digits(digits) else totp.use_recovery(store, user, code))
    if not ok:
        failed(request, user, second_step=True)
        return await verify_page(request, 401, "That code is not right, or it was already used. "
                                               "Codes change every 30 seconds: try the one your app shows now.")
    return await open_session(request, user, True, target,
                              "a password and the code app" if plain_digits(digits) else "a password and a recovery code")


@auth.anyone
async def passkey_options(request: Request) -> Response:
    """Options for signing in with a passkey here: after the password (that user's passkeys),
    or on its own (any passkey of this address)."""
    pending = _pending(request)
    user = str(pending["user"]) if pending else None
    wait = wait_for(request, user)
    if wait > 0:
        return JSONResponse({"error": too_many(wait)}, status_code=429)
    mine = await accounts.passkeys_of(_store(request), user) if user else []
    try:
        options, key = page_of(request).passkeys.signin_options(request, user, mine)
    except passkeys.PasskeyError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    response = Response(options, media_type="application/json")
    cookies.put(response, request, cookies.CHALLENGE, key, max_age=int(passkeys.CHALLENGE_TTL), samesite="strict")
    return response


@auth.anyone
async def passkey_post(request: Request) -> Response:
    pending = _pending(request)
    claimed = str(pending["user"]) if pending else ""
    wait = wait_for(request, claimed or None)
    if wait > 0:
        return JSONResponse({"error": too_many(wait)}, status_code=429)
    try:
        body = await request.json()
        user = await page_of(request).passkeys.authenticate(request, _store(request), body)
    except (ValueError, passkeys.PasskeyError) as exc:
        failed(request, claimed, second_step=bool(claimed))
        return JSONResponse({"error": f"That passkey did not work: {exc}"}, status_code=401)
    target = safe_next(str(pending["next"])) if pending else "/"
    response = await open_session(request, user, True, target, "a password and a passkey" if pending else "a passkey")
    answer = JSONResponse({"next": target})
    answer.raw_headers += [h for h in response.raw_headers if h[0] == b"set-cookie"]
    return answer


@auth.action
async def logout_post(request: Request) -> Response:
    token = cookies.get(request, cookies.SESSION)
    store = gateway_of(request).store
    if token and store is not None:
        await page_of(request).sessions.end(store, token)
    response = redirect(request, "/login", "Signed out.")
    cookies.drop(response, request, cookies.SESSION)
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
