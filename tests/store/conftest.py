import pytest

from vidindex.store import Committer, Store, get_embedder


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder (all-MiniLM-L6-v2 from its wheel), loaded once per session."""
    return get_embedder()


@pytest.fixture
def paths(tmp_path):
    return {"db": str(tmp_path / "db"), "snapshots": str(tmp_path / "snapshots"), "parquet": str(tmp_path / "parquet")}


@pytest.fixture
def store(paths, embedder):
    return Store(paths["db"], embedder=embedder)


@pytest.fixture
def committer(paths, store):
    return Committer(paths["db"], paths["snapshots"], paths["parquet"], store=store)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with bucket "index"; yields its endpoint and credentials."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="index")
    yield {"endpoint": endpoint, "key": "testing", "secret": "testing"}
    server.stop()
