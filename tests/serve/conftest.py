"""`vidindex serve` running for real: Ray Serve on a local 2-CPU Ray cluster, over a copy of the
archive of tests/query (three indexed videos and one that is not a video, the tiny model, real
LanceDB), with a token. The copy takes the answers that ask-archive jobs write, so the shared
archive stays as tests/query expect it."""

from __future__ import annotations

import logging
import secrets
import shutil
import socket
from dataclasses import dataclass

import pytest

from tests.query.conftest import PLANTED, archive, embedder, tiny_dir, video_files  # noqa: F401
from vidindex.serve.app import APP_NAME, application

TOKEN = secrets.token_urlsafe(24)


@dataclass
class Service:
    url: str  # ends with "/"
    db: str
    video_ids: dict[str, str]  # file name -> video_id
    paths: dict[str, str]  # file name -> local path
    failed_id: str
    token: str = TOKEN

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def service(archive, video_files, tmp_path_factory):  # noqa: F811
    import ray
    from ray import serve

    db = str(tmp_path_factory.mktemp("served") / "db")
    shutil.copytree(archive.db, db)
    if ray.is_initialized():  # another package's cluster
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(application(db, token=TOKEN, device="cpu"), name=APP_NAME, route_prefix="/", blocking=False)
        yield Service(url=f"http://127.0.0.1:{port}/", db=db, video_ids=archive.video_ids, paths=video_files,
                      failed_id=archive.failed_id)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def client(service):
    import httpx

    with httpx.Client(base_url=service.url, headers=service.auth, timeout=120) as c:
        yield c
