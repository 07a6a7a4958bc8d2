"""The cli tests index like tests/run (a Ray cluster with 2 fake GPUs, real videos, the tiny model)
and query the archive of tests/query: their fixtures, registered again for this package (so
ray_cluster starts and stops with tests/cli)."""

from tests.query.conftest import PLANTED, archive, embedder, single_video_db, tiny_dir, video_files  # noqa: F401
from tests.run.conftest import ray_cluster, tiny_model_dir, videos  # noqa: F401
