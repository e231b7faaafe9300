"""The security page (code app, recovery codes, passkeys, reaching the page from outside) and
the users page (list, add, remove, change your password, sign out everywhere). Every POST
here needs a signed-in session and the form's CSRF token (webview.infra.auth)."""

from __future__ import annotations

import base64
from urllib.parse import quote
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.core.events import EventKind
from reconciler.store import Store, accounts
from webview import signin
from webview.infra import auth, cookies, doors, passkeys, totp, users
from webview.infra.page import gateway_of, page_of
from webview.infra.render import redirect, render


def _store(request: Request) -> Store:
    store = gateway_of(request).store
    assert store is not None
    return store


def _me(request: Request) -> str:
    return auth.user_name(request)


def _key_id(raw: bytes) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def _changed(request: Request, what: str, change: str) -> None:
    me = _me(request)
    signin.Audit(request).event(EventKind.ACCOUNT_CHANGED, f"{me}: {what}", user=me, change=change)


def _outside(request: Request) -> dict[str, Any]:
    daemon = gateway_of(request)
    result = daemon.reconciler.result
    web = result.settings.web if result else None
    page = page_of(request)
    return {"door": page.tunnel_url, "hostname": web.hostname if web else None, "access": page.access is not None}


@auth.page
async def security_page(request: Request) -> Response:
    me, store = _me(request), _store(request)
    factors = await accounts.second_factors(store, me)
    keys = [{**k, "key": _key_id(k["id"])} for k in await accounts.passkeys_of(store, me)]
    here = passkeys.place(request)
    return render(request, "security.html", factors=factors, keys=keys, here=here[0] if here else None,
                  via=auth.signed_in(request).via, outside=_outside(request), tunnel=doors.is_tunnel(request),
                  local_name=request.url.replace(hostname="localhost").replace(path="/security", query=""))


@auth.page
async def totp_page(request: Request) -> Response:
    me, store = _me(request), _store(request)
    factors = await accounts.second_factors(store, me)
    if factors["totp"]:
        return redirect(request, "/security", "Your code app is already on.")
    secret = await totp.pending(store, page_of(request).box, me)
    from markupsafe import Markup

    return render(request, "security_totp.html", qr=Markup(totp.qr_svg(totp.uri(secret, me))),
                  secret=totp.grouped(secret), error=None)


@auth.action
async def totp_post(request: Request) -> Response:
    me, store = _me(request), _store(request)
    form = await request.form()
    codes = await totp.confirm(store, page_of(request).box, me, str(form.get("code", "")))
    if codes is None:
        factors = await accounts.second_factors(store, me)
        if not factors["pending"]:
            return redirect(request, "/security/totp")
        from markupsafe import Markup

        secret = await totp.pending(store, page_of(request).box, me)
        return render(request, "security_totp.html", status=400, secret=totp.grouped(secret),
                      qr=Markup(totp.qr_svg(totp.uri(secret, me))),
                      error="That code is not right. Type the 6 digits your app shows now (they change every 30 s).")
    _changed(request, "turned on the code app", "totp on")
    return _codes_page(request, me, codes, first=True)


@auth.action
async def totp_off(request: Request) -> Response:
    me, store = _me(request), _store(request)
    form = await request.form()
    wait = own_password_wait(request)
    if wait > 0:
        return redirect(request, "/security", too_many_own(wait) + " The code app stays on.")
    if not await users.verify(store, me, str(form.get("password", ""))):
        own_password_wrong(request)
        return redirect(request, "/security", "Wrong password: the code app stays on.")
    await accounts.disable_totp(store, me)
    _changed(request, "turned off the code app", "totp off")
    return redirect(request, "/security", "The code app is off. Signing in from outside now needs a passkey.")


@auth.action
async def new_codes(request: Request) -> Response:
    me = _me(request)
    codes = totp.new_recovery_codes()
    await accounts.replace_recovery_codes(_store(request), me, [totp.code_hash(c) for c in codes])
    _changed(request, "made new recovery codes (the old ones no longer work)", "recovery codes")
    return _codes_page(request, me, codes, first=False)


def _codes_page(request: Request, me: str, codes: list[str], first: bool) -> Response:
    """The codes, shown once: on the page, and as a text file to keep (a link that holds the
    file itself, so nothing of them is stored to fetch it again)."""
    text = totp.codes_text(me, codes, request.url.hostname or "")
    return render(request, "security_codes.html", codes=codes, first=first,
                  download="data:text/plain;charset=utf-8," + quote(text), filename=totp.CODES_FILE)


@auth.action
async def passkey_options(request: Request) -> Response:
    me = _me(request)
    try:
        options, key = page_of(request).passkeys.registration_options(request, me,
                                                                     await accounts.passkeys_of(_store(request), me))
    except passkeys.PasskeyError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    response = Response(options, media_type="application/json")
    cookies.put(response, request, cookies.CHALLENGE, key, max_age=int(passkeys.CHALLENGE_TTL), samesite="strict")
    return response


@auth.action
async def passkey_add(request: Request) -> Response:
    try:
        body = await request.json()
        label = str(body.pop("label", "") or "") if isinstance(body, dict) else ""
        await page_of(request).passkeys.register(request, _store(request), _me(request), body, label)
    except (ValueError, passkeys.PasskeyError) as exc:
        return JSONResponse({"error": f"The passkey was not added: {exc}"}, status_code=400)
    _changed(request, "added a passkey", "passkey added")
    return JSONResponse({"next": "/security"})


@auth.action
async def passkey_remove(request: Request) -> Response:
    raw = request.path_params["key"]
    try:
        cred_id = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError:
        return redirect(request, "/security", "No such passkey.")
    gone = await accounts.delete_passkey(_store(request), _me(request), cred_id)
    if gone:
        _changed(request, "removed a passkey", "passkey removed")
    return redirect(request, "/security", "Passkey removed." if gone else "No such passkey.")


# --- your own password, asked again while signed in ------------------------------------------
def own_password_wait(request: Request) -> float:
    """Seconds until this session may give its current password again (0: now). Only its own
    wrong tries count: whatever strangers try at the sign-in never blocks it (webview.infra.lockout)."""
    return float(page_of(request).lockouts.own_password.retry_after(auth.signed_in(request).key))


def own_password_wrong(request: Request) -> None:
    page_of(request).lockouts.own_password.fail(auth.signed_in(request).key)


def too_many_own(wait: float) -> str:
    return f"Your current password was wrong too many times here: try again in {wait:.0f} s."


# --- users ---------------------------------------------------------------------------------
@auth.page
async def users_page(request: Request) -> Response:
    people = await accounts.list_users(_store(request))
    return render(request, "users.html", people=people, me=_me(request), via=auth.signed_in(request).via,
                  min_length=users.MIN_PASSWORD)


@auth.action
async def user_add(request: Request) -> Response:
    form = await request.form()
    name, password = users.normal_name(str(form.get("name", ""))), str(form.get("password", ""))
    store = _store(request)
    try:
        users.check_name(name)
        if await accounts.password_hash(store, name) is not None:
            raise users.UserError(f"there is already a user named {name}")
        await users.set_user(store, name, password, sessions=page_of(request).sessions)
    except users.UserError as exc:
        return redirect(request, "/users", f"Not added: {exc}.")
    _changed(request, f"added the user {name}", "user added")
    return redirect(request, "/users", f"{name} can now sign in with the password you chose. Tell them in person.")


@auth.action
async def user_remove(request: Request) -> Response:
    name = request.path_params["name"]
    if name == _me(request):
        return redirect(request, "/users", "You cannot remove yourself. Another user can.")
    page_of(request).sessions.forget(name)
    gone = await accounts.delete_user(_store(request), name)
    if gone:
        _changed(request, f"removed the user {name}", "user removed")
    return redirect(request, "/users", f"{name} was removed and signed out." if gone
                    else f"{name} was not removed: there must always be one user left.")


@auth.action
async def password_post(request: Request) -> Response:
    me, store = _me(request), _store(request)
    form = await request.form()
    current, new, again = (str(form.get(k, "")) for k in ("current", "password", "password2"))
    wait = own_password_wait(request)  # never the sign-in's lock-outs: only this session's own wrong tries
    if wait > 0:
        return redirect(request, "/users", too_many_own(wait) + " Nothing changed.")
    if not await users.verify(store, me, current):
        own_password_wrong(request)
        return redirect(request, "/users", "Your current password was not right: nothing changed.")
    if new != again:
        return redirect(request, "/users", "The two new passwords are not the same: nothing changed.")
    try:
        await users.set_user(store, me, new, sessions=page_of(request).sessions)  # ends every session of yours ...
    except users.UserError as exc:
        return redirect(request, "/users", f"Not changed: {exc}.")
    _changed(request, "changed their password (signed out everywhere else)", "password")
    response = await signin.open_session(request, me, auth.signed_in(request).second_factor, "/users", "")  # ... but this one
    cookies.put(response, request, cookies.FLASH, "Password%20changed.%20You%20were%20signed%20out%20everywhere%20else.",
                max_age=60)
    return response


@auth.action
async def signout_all(request: Request) -> Response:
    await page_of(request).sessions.end_all(_store(request), _me(request))
    _changed(request, "signed out on every device", "signed out everywhere")
    response = redirect(request, "/login", "You were signed out on every device.")
    cookies.drop(response, request, cookies.SESSION)
    return response


@auth.action
async def hostname_post(request: Request) -> Response:
    """`[web] hostname`: the name the tunnel publishes this page at (empty: not published)."""
    from reconciler.ops import tomledit
    from reconciler.tunnel.hostnames import HostnameError, ascii_hostname
    from webview.settings_form import SettingsError
    from webview.settings_pages import in_force, save

    form = await request.form()
    wanted = str(form.get("hostname", "")).strip().lower().removeprefix("https://").rstrip("/")
    if wanted:
        try:
            wanted = ascii_hostname(wanted)
        except HostnameError as exc:
            return redirect(request, "/security#outside", f"Not saved: {wanted} is not a web address ({exc}).")
        if "." not in wanted or wanted.startswith("*"):
            return redirect(request, "/security#outside", "Not saved: write a full name like gateway.example.com.")
    try:
        ok = await save(request, {"web": {"hostname": wanted or tomledit.DELETE}}, lambda data: None,
                        lambda s: (s.web.hostname or "") == wanted)
    except SettingsError as exc:
        return redirect(request, "/security#outside", f"Not saved: {exc}")
    _changed(request, "the page's web address", wanted or "none")
    what = (f"This page will be at https://{wanted} once the tunnel runs (a sign-in there needs your second "
            "step)." if wanted else "This page is no longer published on the internet.")
    return redirect(request, "/security#outside", f"{what} {in_force(ok)}")


routes = [
    Route("/security", security_page),
    Route("/security/hostname", hostname_post, methods=["POST"]),
    Route("/security/totp", totp_page),
    Route("/security/totp", totp_post, methods=["POST"]),
    Route("/security/totp/off", totp_off, methods=["POST"]),
    Route("/security/codes", new_codes, methods=["POST"]),
    Route("/security/passkeys/options", passkey_options, methods=["POST"]),
    Route("/security/passkeys", passkey_add, methods=["POST"]),
    Route("/security/passkeys/{key}/remove", passkey_remove, methods=["POST"]),
    Route("/users", users_page),
    Route("/users/add", user_add, methods=["POST"]),
    Route("/users/{name}/remove", user_remove, methods=["POST"]),
    Route("/account/password", password_post, methods=["POST"]),
    Route("/account/signout-all", signout_all, methods=["POST"]),
]
