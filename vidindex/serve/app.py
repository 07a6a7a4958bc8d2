"""The Ray Serve application of `vidindex serve`: three deployments.

    Front        FastAPI ingress (vidindex.serve.api): the page, search, videos, thumbnails,
                 source bytes; calls the two below. Reserves no CPU.
    Asker        the model replicas (vidindex.serve.asker): load and warm the index's models
                 once, answer asks and archive batches. One GPU each on a GPU cluster, else one
                 CPU (vidindex.run.ray.plan_serving); scale with num_replicas or autoscaling_config.
    ArchiveJobs  one replica keeping the ask-archive jobs (vidindex.serve.jobs); its batches go
                 to the Asker replicas.

`application(db, ...)` builds it for `vidindex serve`; `build_app(args)` is the same for Serve
config files and KubeRay's RayService (`import_path: vidindex.serve.app:build_app`), where the
token comes from VIDINDEX_TOKEN and a deployment's options (replicas, autoscaling, resources)
may be overridden per deployment name.
"""

from __future__ import annotations

import logging

from ray import serve

from vidindex.query.common import open_store
from vidindex.run.ray import SERVE_FRONT_OPTIONS, SERVE_JOBS_OPTIONS, plan_serving
from vidindex.serve.api import Settings, make_api
from vidindex.serve.asker import Asker
from vidindex.serve.auth import BindError, token_digest, token_from
from vidindex.serve.catalog import NotFound
from vidindex.serve.errors import describe
from vidindex.serve.jobs import JobBook
from vidindex.store import StoreError

logger = logging.getLogger("vidindex.serve")

APP_NAME = "vidindex"
# A model replica takes requests one at a time (vidindex.serve.asker); a few more wait at it so
# that the next one starts at once. Serve sends the rest to other replicas, or queues them.
ASKER_MAX_ONGOING = 4
# The front answers many small requests at once (a page of thumbnails, video byte ranges that
# last as long as a player reads), each in its own thread or awaiting a replica.
FRONT_MAX_ONGOING = 100


@serve.ingress()
class Front:
    def __init__(self, settings: Settings, asker, jobs):
        self.settings = settings
        self.asker = asker
        self.jobs = jobs
        self.store = open_store(settings.db)
        try:
            if self.store.count("captions"):
                self.store.embedder.embed(["warm up"])  # the first vector search is then as quick as the next
        except StoreError as error:  # vector search will say so; everything else works
            logger.warning("caption embedder not loaded: %s", error)

    def __serve_build_asgi_app__(self):
        return make_api(self.settings, self.store, self.asker, self.jobs)


class ArchiveJobs:
    def __init__(self, db: str, asker):
        self.asker = asker
        self.book = JobBook(db, self._answer_batches)

    def _answer_batches(self, batches: list[list[dict]], question: str):
        """All batches sent at once (Serve spreads them over the replicas), read back in order."""
        responses = [self.asker.answer_batch.remote(batch, question) for batch in batches]
        for response in responses:
            yield response.result()

    def submit(self, question: str, where: str | None, at: str, force: bool) -> dict:
        try:
            job, new = self.book.submit(question, where, at, force)
            return {"job": job, "new": new}
        except Exception as error:  # noqa: BLE001 - returned as data (vidindex.serve.asker says why)
            return describe(error)

    def get(self, job_id: str) -> dict:
        job = self.book.get(job_id)
        return job if job is not None else describe(NotFound(f"no archive job {job_id!r} (jobs are kept while the "
                                                             "service runs)"))

    def list(self) -> list[dict]:
        return self.book.list()


def application(db: str, *, token: str | None = None, model: str | None = None, device: str = "auto",
                replicas: int = 1, cluster: dict | None = None):
    """The bound Serve application. `cluster`: ray.cluster_resources() for sizing the model
    replicas (default: asked of the Ray this process joined)."""
    if cluster is None:
        import ray

        cluster = ray.cluster_resources()
    resources = plan_serving(cluster, replicas, device=device)
    replica_device = "cuda" if resources.gpus_per_actor else "cpu"
    asker = serve.deployment(Asker, name="Asker", num_replicas=replicas, ray_actor_options=resources.options,
                             max_ongoing_requests=ASKER_MAX_ONGOING).bind(db, replica_device, model)
    jobs = serve.deployment(ArchiveJobs, name="ArchiveJobs", num_replicas=1,
                            ray_actor_options=SERVE_JOBS_OPTIONS).bind(db, asker)
    settings = Settings(db=db, token_sha256=None if token is None else token_digest(token))
    return serve.deployment(Front, name="Front", ray_actor_options=SERVE_FRONT_OPTIONS,
                            max_ongoing_requests=FRONT_MAX_ONGOING).bind(settings, asker, jobs)


def build_app(args: dict):
    """Serve's application builder: args {db, model?, device?, replicas?, open?}. The token is
    VIDINDEX_TOKEN's; without one the app is refused unless `open: true` (a cluster's proxy
    listens on every node's network)."""
    if not args.get("db"):
        raise BindError("args.db: the index database URI is required")
    token = token_from(None)
    if token is None and not args.get("open"):
        raise BindError("set VIDINDEX_TOKEN (e.g. from a Secret), or pass open: true for a service reachable only "
                        "from this machine")
    return application(str(args["db"]), token=token, model=args.get("model"), device=str(args.get("device", "auto")),
                       replicas=int(args.get("replicas", 1)))
