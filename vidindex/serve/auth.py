"""Who may call `vidindex serve`: bound to loopback it is open to this machine's users; bound
anywhere else it needs a token, checked on every request.

The token is presented as `Authorization: Bearer <token>`, or once as `?token=<token>` on a page
link, which sets an HttpOnly, SameSite=Strict cookie and redirects to the same URL without it
(so the token stays out of the address bar, the history and Referer headers). The app keeps only
its sha256; the token is never logged or echoed.

Without a token (loopback only) requests must name a loopback host, so a web page elsewhere
cannot reach the service through DNS rebinding, and writes must be JSON (a cross-site form post
cannot send that without the browser asking first, which the service does not allow).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

TOKEN_ENV = "VIDINDEX_TOKEN"
COOKIE = "vidindex_token"
QUERY_PARAMETER = "token"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
OPEN_PATHS = {"/api/health"}  # liveness probes carry no token


class BindError(ValueError):
    """The host/token combination is refused: the message says why and what to do."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_from(flag: str | None) -> str | None:
    """The token given on the command line, else in VIDINDEX_TOKEN; None for none."""
    token = flag if flag is not None else os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        raise BindError(f"the token is empty (--token or {TOKEN_ENV})")
    return token


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if token is None and not is_loopback(host):
        raise BindError(f"--host {host} makes the service reachable from other machines: give a token "
                        f"(--token or {TOKEN_ENV}), or bind 127.0.0.1")
    if token is not None and len(token) < 16:
        raise BindError("the token is too short: use at least 16 characters (e.g. python -c "
                        "\"import secrets; print(secrets.token_urlsafe(24))\")")


class AccessCheck:
    """ASGI middleware: the token (or, without one, the loopback rules) on every HTTP request."""

    def __init__(self, app, token_sha256: str | None):
        self.app = app
        self.digest = token_sha256

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import Request

        request = Request(scope)
        path = _path(scope)
        refusal = None
        if request.method == "POST" and request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            refusal = _error(415, "requests that change something must send JSON (Content-Type: application/json)")
        elif self.digest is None:
            if not is_loopback(_host_name(request.headers.get("host", ""))):
                refusal = _error(403, "this service only answers requests for a loopback host (127.0.0.1, localhost)")
        elif path not in OPEN_PATHS:
            refusal = self._check_token(request, path)
        if refusal is not None:
            return await refusal(scope, receive, send)
        return await self.app(scope, receive, send)

    def _check_token(self, request, path: str):
        offered = request.query_params.get(QUERY_PARAMETER)
        if offered is not None:
            if not self._matches(offered):
                return _unauthorized(request, "wrong token")
            if request.method not in ("GET", "HEAD"):
                return None
            # Once from a link: keep it in a cookie, and take it out of the URL.
            url = request.url.remove_query_params(QUERY_PARAMETER)
            response = RedirectResponse(url.path + (f"?{url.query}" if url.query else ""), status_code=303)
            response.set_cookie(COOKIE, offered, httponly=True, samesite="strict", path=_root(request),
                                secure=request.url.scheme == "https")
            return response
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return None if self._matches(header[7:].strip()) else _unauthorized(request, "wrong token")
        cookie = request.cookies.get(COOKIE)
        if cookie is not None:
            return None if self._matches(cookie) else _unauthorized(request, "wrong token")
        return _unauthorized(request, "this service needs a token")

    def _matches(self, offered: str) -> bool:
        return hmac.compare_digest(token_digest(offered), self.digest)


def _host_name(header: str) -> str:
    """The host of a Host header: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:8000" -> "[::1]"."""
    if header.startswith("["):
        return header.split("]")[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _path(scope) -> str:
    """The request path inside the app (without the route prefix it is mounted at)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _root(request) -> str:
    return request.scope.get("root_path") or "/"


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _unauthorized(request, why: str):
    message = (f"{why}: send 'Authorization: Bearer <token>', or open the page once with "
               f"?{QUERY_PARAMETER}=<token>")
    headers = {"WWW-Authenticate": "Bearer"}
    if "text/html" in request.headers.get("accept", "") and not _path(request.scope).startswith("/api/"):
        return HTMLResponse(_LOGIN_PAGE.format(why=why), status_code=401, headers=headers)
    return _error(401, message, headers)


_LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>vidindex: token needed</title>
<style>body{{font:16px system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#223}}
code{{background:#eef;padding:.1em .3em;border-radius:3px}}</style>
<h1>Token needed</h1><p>{why}. This vidindex service was started with a token.
Open this address once with <code>?token=YOUR_TOKEN</code> at the end; the browser then keeps it.</p>
"""
