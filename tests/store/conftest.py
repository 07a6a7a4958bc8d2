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
