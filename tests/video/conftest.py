"""Fixtures: real files written by vidindex.video.synthetic, a local S3 (moto server) and a
local HTTP server that can refuse, stall or serve byte ranges."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from vidindex.video.synthetic import write_video


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def make_video(video_dir):
    """make_video(name, **write_video kwargs) -> (path, schedule); cached per session."""
    cache: dict = {}

    def make(name: str, seconds: float = 4.0, **kwargs):
        if name not in cache:
            path = video_dir / name
            cache[name] = (str(path), write_video(path, seconds, **kwargs))
        return cache[name]

    return make


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1; yields fsspec options (fs_options) for s3fs."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"key": "testing-key", "secret": "testing-secret",
               "endpoint_url": f"http://127.0.0.1:{port}", "use_listings_cache": False}
    yield options
    server.stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves files from server.files {path: bytes}; /forbidden/* -> 403; server.stall_from:
    GETs of ranges starting at or after that byte hang until the server shuts down."""

    def log_message(self, *args):
        pass

    def _resolve(self):
        if self.path.startswith("/forbidden/"):
            self.send_error(403)
            return None
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
        return data

    def do_HEAD(self):
        data = self._resolve()
        if data is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", '"v1"')
            self.end_headers()

    def do_GET(self):
        data = self._resolve()
        if data is None:
            return
        start, stop = 0, len(data)
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, stop = int(a or 0), min(len(data), int(b) + 1 if b else len(data))
        if self.server.stall_from is not None and start >= self.server.stall_from:
            self.server.release.wait()  # a stalled storage backend
            return
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "bytes")
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:stop])


@pytest.fixture()
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.files, server.stall_from, server.release = {}, None, threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
