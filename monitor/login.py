"""Login and logout pages: a token pasted once, or OIDC authorization-code login.

Cookies (all HttpOnly; Secure when the request came over https, or as configured):

- ``ailuro_session``: the session id (:mod:`monitor.auth`), SameSite=Strict, until the session ends.
- ``ailuro_login``: a login form's anti-CSRF value (double submit: the form must send the same
  value), so another site cannot log a browser in under the attacker's identity. SameSite=Strict.
- ``ailuro_oidc``: the ``state`` of an OIDC login in progress, SameSite=Lax (the issuer's redirect
  back is a cross-site navigation, which does not carry Strict cookies), ten minutes.

Logout is a POST carrying the session's anti-CSRF token, so a link or an image on another site
cannot log a viewer out. After an OIDC login the browser is sent on by a page of the monitor's own
(a meta refresh), not by a redirect: the navigation started on the issuer's site, and browsers
hold Strict cookies back for its whole redirect chain.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ailuro.errors import AiluroError, InvalidArgument, PermissionDenied, Unauthenticated
from monitor.auth import SESSION_COOKIE, Authenticator
from monitor.oidc import PENDING_TTL_S, OidcClient

LOGIN_CSRF_COOKIE = "ailuro_login"
OIDC_STATE_COOKIE = "ailuro_oidc"
MAX_FORM_BYTES = 32 * 1024
"""A login or logout form larger than this is refused (a token is at most 16 KiB)."""


def safe_next(raw: str) -> str:
    """Where to go after login: a path of this monitor only (never ``//host`` or another site)."""
    if not raw.startswith("/") or raw.startswith("//") or "\\" in raw or any(ord(c) < 32 for c in raw):
        return "/jobs/"
    return raw[:2048]


def is_secure(request: Request, forced: bool | None) -> bool:
    """Whether cookies get the Secure flag: as configured, else when the request came over https."""
    return forced if forced is not None else request.url.scheme == "https"


async def read_form(request: Request) -> dict[str, str]:
    """A bounded ``application/x-www-form-urlencoded`` body as ``{name: first value}``."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise InvalidArgument("expected a form (application/x-www-form-urlencoded)", field="content-type")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidArgument(f"form larger than {MAX_FORM_BYTES} bytes", field="token")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument("form is not valid UTF-8 form data", field="token") from None
    return {k: v[0] for k, v in fields.items()}


def add_login_routes(
    app: FastAPI,
    authn: Authenticator,
    oidc: OidcClient | None,
    render: Callable[..., str],
) -> None:
    """``/login`` (form and POST), ``/logout`` (POST), ``/login/oidc`` and its callback."""
    forced = authn.auth.cookie_secure

    def set_cookie(response: Response, request: Request, name: str, value: str, **kw: Any) -> None:
        kw.setdefault("samesite", "strict")
        response.set_cookie(name, value, httponly=True, secure=is_secure(request, forced), path="/", **kw)

    def login_page(request: Request, *, next_url: str, error: str = "", status: int = 200) -> Response:
        csrf = secrets.token_urlsafe(32)
        html = render(
            request,
            "login.html",
            current="login",
            data={"next": next_url, "error": error, "csrf": csrf},
            oidc_issuer=oidc.config.issuer if oidc else "",
            tokens=authn.accepts_tokens,
            public_vo=authn.auth.public_vo,
        )
        response = HTMLResponse(html, status_code=status)
        set_cookie(response, request, LOGIN_CSRF_COOKIE, csrf, max_age=int(PENDING_TTL_S))
        return response

    def logged_in(request: Request, session_id: str, expires: float, next_url: str, *, refresh: bool) -> Response:
        if refresh:  # after OIDC: a navigation of our own page, so the Strict cookie goes along
            html = render(request, "continue.html", data={"next": next_url})
            response: Response = HTMLResponse(html)
        else:
            response = RedirectResponse(next_url, status_code=303)
        set_cookie(response, request, SESSION_COOKIE, session_id, max_age=max(1, int(expires - time.time())))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        response.delete_cookie(OIDC_STATE_COOKIE, path="/")
        return response

    @app.get("/login", include_in_schema=False)
    @app.get("/login/")
    def login_form(request: Request) -> Response:
        return login_page(request, next_url=safe_next(request.query_params.get("next", "/jobs/")))

    @app.post("/login", include_in_schema=False)
    @app.post("/login/")
    async def login_submit(request: Request) -> Response:
        form = await read_form(request)
        next_url = safe_next(form.get("next", "/jobs/"))
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(cookie, form.get("csrf", "")):
            return login_page(request, next_url=next_url, error="the login form expired; try again", status=403)
        token = form.get("token", "").strip()
        if not token:
            return login_page(request, next_url=next_url, error="paste a token", status=400)
        try:
            session_id, session = await asyncio.to_thread(authn.login, token)
        except (Unauthenticated, PermissionDenied) as exc:
            status = 403 if isinstance(exc, PermissionDenied) else 401
            return login_page(request, next_url=next_url, error=str(exc), status=status)
        return logged_in(request, session_id, session.expires, next_url, refresh=False)

    @app.post("/logout", include_in_schema=False)
    @app.post("/logout/")
    async def logout(request: Request) -> Response:
        form = await read_form(request)
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = authn.sessions.get(session_id)
        if session is not None:
            if not hmac.compare_digest(session.csrf, form.get("csrf", "")):
                raise PermissionDenied("logout must come from the monitor's own page (anti-CSRF token missing)")
            authn.sessions.end(session_id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/login/oidc")
    def oidc_start(request: Request) -> Response:
        if oidc is None:
            raise InvalidArgument("this monitor has no OIDC login configured (--oidc FILE)", field="oidc")
        try:
            state, url = oidc.start(safe_next(request.query_params.get("next", "/jobs/")))
        except Unauthenticated as exc:
            return login_page(request, next_url="/jobs/", error=str(exc), status=502)
        response = RedirectResponse(url, status_code=302)
        set_cookie(response, request, OIDC_STATE_COOKIE, state, samesite="lax", max_age=int(PENDING_TTL_S))
        return response

    @app.get("/login/oidc/callback")
    def oidc_callback(request: Request) -> Response:
        if oidc is None:
            raise InvalidArgument("this monitor has no OIDC login configured (--oidc FILE)", field="oidc")
        params = request.query_params
        state, code = params.get("state", ""), params.get("code", "")
        if params.get("error"):
            message = f"the issuer refused the login: {params.get('error', '')[:100]}"
            return login_page(request, next_url="/jobs/", error=message, status=401)
        cookie = request.cookies.get(OIDC_STATE_COOKIE, "")
        if not state or not code or len(code) > 4096 or not cookie or not hmac.compare_digest(cookie, state):
            message = "this login did not start in this browser (state mismatch); start again"
            return login_page(request, next_url="/jobs/", error=message, status=401)
        try:
            access, next_url = oidc.finish(state, code)
            if oidc.validator is not None:
                authn.add_issuer(oidc.config.issuer, oidc.validator)
            session_id, session = authn.login(access)
        except AiluroError as exc:
            status = 403 if isinstance(exc, PermissionDenied) else 401
            return login_page(request, next_url="/jobs/", error=str(exc), status=status)
        return logged_in(request, session_id, session.expires, next_url, refresh=True)


def login_url(request: Request) -> str:
    """``/login?next=<this page>``."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?" + urlencode({"next": here})
