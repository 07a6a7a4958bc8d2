"""End to end with the trained self-test model: its Ray cluster is tests/run's (2 CPUs, 2 fake
GPUs), registered again for this package so it starts and stops with tests/e2e."""

from tests.run.conftest import ray_cluster  # noqa: F401
