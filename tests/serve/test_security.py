"""Who may call the service and what a request can reach: the token on every call (header, or
once in a link then a cookie), hostile video ids and paths, loopback-only without a token, and
the token never in a log."""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from vidindex.serve.auth import BindError, check_bind, is_loopback
from vidindex.serve.media import RangeNotSatisfiable, parse_range

# ---- the token


def test_every_api_call_needs_the_token(service, client):
    import httpx

    bare = httpx.Client(base_url=service.url, timeout=60)
    video = service.video_ids["cam0.mp4"]
    for method, path in [("GET", "api/videos"), ("GET", "api/info"), ("GET", "api/search?q=balloon"),
                         ("GET", f"api/videos/{video}"), ("GET", f"api/videos/{video}/frame?t=1"),
                         ("GET", f"api/videos/{video}/source"), ("POST", f"api/videos/{video}/ask"),
                         ("POST", "api/archive/jobs"), ("GET", "api/archive/jobs"), ("GET", "openapi.json"),
                         ("GET", "docs"), ("GET", "static/app.js"), ("GET", "")]:
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}):
            response = bare.request(method, path, headers=headers, json={} if method == "POST" else None)
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer"
            assert service.token not in response.text
    assert bare.get("api/health").json() == {"ok": True}  # the liveness probe needs none
    assert bare.get("api/videos", headers={"Authorization": f"Bearer {service.token}"}).status_code == 200
    page = bare.get("", headers={"Accept": "text/html"})
    assert page.status_code == 401 and "?token=" in page.text  # a person is told what to do


def test_a_link_with_the_token_sets_a_cookie_and_drops_it_from_the_url(service):
    import httpx

    browser = httpx.Client(base_url=service.url, timeout=60)
    response = browser.get("", params={"token": service.token, "x": "1"})
    assert response.status_code == 303 and response.headers["location"] == "/?x=1"
    cookie = response.headers["set-cookie"]
    assert "vidindex_token=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert browser.get("api/videos").status_code == 200  # the cookie from now on
    assert browser.get("", params={"token": "not-the-token-at-all"}).status_code == 401


# ---- what a request can reach


def raw_get(service, path: str) -> tuple[int, str]:
    """GET with the path sent exactly as written (no client-side normalisation of ../ or %2e)."""
    url = urlsplit(service.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.putheader("Authorization", service.auth["Authorization"])
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


HOSTILE = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2e%2e", "..",
           "....//....//etc/passwd", "%252e%252e%252fetc%252fpasswd", "/etc/passwd", "%2Fetc%2Fpasswd",
           "file:%2F%2F%2Fetc%2Fpasswd", "x'%20OR%20'1'='1", "x%27%3B%20DROP%20TABLE%20videos%3B--",
           "a%22b", "%00", "a%0Ab"]


@pytest.mark.parametrize("video", HOSTILE)
@pytest.mark.parametrize("tail", ["", "/frame?t=1", "/source"])
def test_hostile_video_ids_reach_nothing(service, video, tail):
    status, body = raw_get(service, f"/api/videos/{video}{tail}")
    assert status in (400, 404), (status, body[:200])
    assert "root:" not in body and "Traceback" not in body
    assert body.startswith("{") and '"error"' in body


def test_hostile_ids_left_the_tables_alone(client, service):
    assert len(client.get("api/videos").json()) == 4
    assert client.get(f"api/videos/{service.video_ids['cam0.mp4']}/source").status_code == 200


@pytest.mark.parametrize("path", ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                                  "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/docs-assets/../../../etc/passwd",
                                  "/static//etc/passwd"])
def test_static_files_stay_in_their_folder(service, path):
    status, body = raw_get(service, path)
    assert status in (400, 404) and "root:" not in body


# ---- without a token: loopback only


def test_binding_beyond_loopback_needs_a_token():
    for host in ("127.0.0.1", "localhost", "::1", "127.3.4.5"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.com"):
        with pytest.raises(BindError, match="give a token"):
            check_bind(host, None)
        check_bind(host, "a-long-enough-token-1234")
    with pytest.raises(BindError, match="too short"):
        check_bind("0.0.0.0", "short")
    assert is_loopback("[::1]") and not is_loopback("127.0.0.1.evil.example")


def test_without_a_token_only_loopback_hosts_are_answered(service):
    """DNS rebinding: a page at evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    from fastapi.testclient import TestClient

    from vidindex.query import open_store
    from vidindex.serve.api import Settings, make_api

    app = make_api(Settings(db=service.db), open_store(service.db))
    local = TestClient(app, base_url="http://127.0.0.1:8000")
    assert local.get("/api/videos").status_code == 200
    assert TestClient(app, base_url="http://localhost:8000").get("/api/videos").status_code == 200
    refused = TestClient(app, base_url="http://evil.example:8000").get("/api/videos")
    assert refused.status_code == 403 and "loopback" in refused.json()["error"]


def test_range_parsing():
    assert parse_range(None, 100).partial is False
    assert (parse_range("bytes=0-0", 100).start, parse_range("bytes=0-0", 100).end) == (0, 0)
    assert parse_range("bytes=0-1,5-6", 100).partial is False  # several ranges: the whole file
    assert parse_range("items=1-2", 100).partial is False
    for bad in ("bytes=100-", "bytes=5-2", "bytes=-0"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(bad, 100)


# ---- logs


def test_the_token_is_never_logged(client, service):
    import ray

    client.get("", params={"token": service.token})  # in a URL once, as a browser would
    client.get("api/search", params={"q": "balloon", "token": service.token})
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert files, f"no Ray logs in {logs}"
    leaked = [p.name for p in files if service.token.encode() in p.read_bytes()]
    assert leaked == []
