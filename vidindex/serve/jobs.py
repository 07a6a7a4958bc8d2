"""Ask-the-archive jobs of `vidindex serve`: submitted, run one at a time, polled for progress
and results.

A job is vidindex.query.ask_archive with its batches answered by the service's warm model
replicas. One job runs at a time, so the answers table has one writer here (the Committer of
the running job). Asking is idempotent as ask-archive is: a question already answered from a
snapshot is read back, not asked again (unless `force`); the same request submitted while an
equal one is queued or running gets that job back. Jobs live in this process: a restart of
the service forgets them (their answers stay in the table).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from vidindex.query.archive import ask_archive, question_id_for
from vidindex.query.ask import parse_at
from vidindex.query.common import check_where, open_store
from vidindex.query.errors import QueryError
from vidindex.serve.errors import describe

KEEP_FINISHED = 200  # finished jobs remembered for polling; older ones are forgotten


@dataclass
class Job:
    id: str
    question: str
    question_id: str
    where: str | None
    at: str
    force: bool
    state: str = "queued"
    done: int = 0  # streams answered (or found stored) so far
    total: int | None = None  # streams to answer, known once the job is planned
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    result: dict | None = None  # ArchiveResult.to_dict() once done

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def request(self) -> tuple:
        return (self.question_id, self.where, self.at, self.force)


class JobBook:
    """The jobs of one service. `answer_batches(batches, question)` yields each batch's outputs
    (vidindex.query.archive.answer_batch's format) from the model replicas."""

    def __init__(self, db: str, answer_batches: Callable[[list[list[dict]], str], Iterable[list[dict]]]):
        self.db = db
        self.answer_batches = answer_batches
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job] = queue.Queue()
        threading.Thread(target=self._work, name="archive-jobs", daemon=True).start()

    def submit(self, question: str, where: str | None = None, at: str = "end", force: bool = False) -> tuple[dict, bool]:
        """(the job, whether it is new). Bad input fails here, before a job exists."""
        if not isinstance(question, str) or not question.strip():
            raise QueryError("empty question")
        if where is not None and not where.strip():
            where = None
        parse_at(at)
        check_where(open_store(self.db), "videos", where)
        job = Job(id=uuid.uuid4().hex[:16], question=question, question_id=question_id_for(question),
                  where=where, at=str(at), force=bool(force))
        with self._lock:
            for other in self._jobs.values():
                if other.state in ("queued", "running") and other.request == job.request:
                    return other.to_dict(), False
            self._jobs[job.id] = job
            self._forget_old()
        self._queue.put(job)
        return job.to_dict(), True

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.to_dict()

    def list(self) -> list[dict]:
        """Newest first, without their results (GET one job for those)."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: -j.submitted_at)
            return [{**job.to_dict(), "result": None} for job in jobs]

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            self._run(job)

    def _run(self, job: Job) -> None:
        def progress(done: int, total: int) -> None:
            with self._lock:
                job.done, job.total = done, total

        with self._lock:
            job.state, job.started_at = "running", time.time()
        try:
            result = ask_archive(self.db, job.question, where=job.where, at=job.at, force=job.force,
                                 answer_batches=self.answer_batches, progress=progress)
            with self._lock:
                job.result, job.state = result.to_dict(), "done"
        except Exception as error:  # noqa: BLE001 - a job records why it failed; the service goes on
            with self._lock:
                job.error, job.state = describe(error)["error"], "failed"
        finally:
            with self._lock:
                job.finished_at = time.time()

    def _forget_old(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.state in ("done", "failed")), key=lambda j: j.submitted_at)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]
