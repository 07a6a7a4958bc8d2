"""The HTTP side of `vidindex serve`: the JSON API (OpenAPI at /docs), the web page, thumbnails
and the videos themselves.

    make_api(settings, store, asker, jobs) -> FastAPI

`asker` and `jobs` are Ray Serve handles of the model replicas (vidindex.serve.asker) and of the
archive-job keeper (vidindex.serve.jobs). Search, the videos' rows, thumbnails and the source
bytes are served here, without the model. Every error is JSON {"error": ..., "status": ...}
(vidindex.serve.errors); none carries a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Literal

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from vidindex.query.search import MODES, search
from vidindex.serve import catalog, media
from vidindex.serve.auth import AccessCheck
from vidindex.serve.errors import describe
from vidindex.store import Store

STATIC = files("vidindex.serve") / "static"
MAX_SEARCH_LIMIT = 200
DEFAULT_THUMBNAIL_WIDTH = 320


@dataclass(frozen=True)
class Settings:
    db: str
    token_sha256: str | None = None  # None: no token (loopback only)


class ApiError(Exception):
    """An error the model or job side already described: {"error", "status"}."""

    def __init__(self, described: dict):
        super().__init__(described["error"])
        self.described = described


# ---- request and response bodies (the OpenAPI schema at /docs)


class Error(BaseModel):
    error: str
    status: int


class Hit(BaseModel):
    source: Literal["caption", "answer"]
    video_id: str
    config_id: str
    uri: str | None
    name: str
    t_start: float = Field(description="seconds; the window (t_start, t_end] the text describes")
    t_end: float
    text: str
    score: float
    ask_command: str
    thumbnail: str = Field(description="URL of a JPEG of the moment, relative to the service root")


class SearchResponse(BaseModel):
    query: str
    mode: str
    hits: list[Hit]


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=2000, examples=["What is happening?"])
    at: float | str = Field(description="seconds, HH:MM:SS, or 'end'", examples=[42.5, "00:01:30", "end"])
    config_id: str | None = None
    max_new_tokens: int | None = Field(default=None, ge=1, le=1024)


class AskResponse(BaseModel):
    question: str
    answer: str
    device: str
    video_id: str
    config_id: str
    uri: str
    at: float | None = Field(description="the time asked (None: the end)")
    as_of: float = Field(description="the moment the answer is as of (seconds)")
    snapshot_t: float | None
    snapshot_uri: str | None
    frames_replayed: int
    last_frame_t: float | None
    note: str | None
    timings: dict[str, float] = Field(description="seconds: load_model_s, load_snapshot_s, replay_s, ask_s, "
                                                  "total_s, queued_s (waiting for the model)")


class JobRequest(BaseModel):
    question: str = Field(min_length=1, max_length=2000)
    where: str | None = Field(default=None, description="SQL on the videos table, e.g. status = 'done'")
    at: float | str = Field(default="end", description="end, or T: each video's latest snapshot at or before T")
    force: bool = Field(default=False, description="ask again where an answer is stored")


class Job(BaseModel):
    id: str
    question: str
    question_id: str
    where: str | None
    at: str
    force: bool
    state: Literal["queued", "running", "done", "failed"]
    done: int
    total: int | None
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    result: dict[str, Any] | None = Field(description="ask-archive's result (answers, skipped, errors) once done")
    new: bool | None = Field(default=None, description="on submit: false when an equal job was already queued or running")


class Video(BaseModel):
    video_id: str
    config_id: str
    uri: str
    name: str
    status: str
    error: str | None
    duration_s: float | None
    fps: float | None
    width: int | None
    height: int | None
    frames_sampled: int | None
    model: str | None
    last_snapshot: float | None
    started_at: str | None
    finished_at: str | None
    caption_count: int


class Caption(BaseModel):
    t_start: float
    t_end: float
    text: str


class Answer(BaseModel):
    question_id: str
    t: float
    question: str
    answer: str


class Snapshot(BaseModel):
    t: float
    bytes: int
    frames_seen: int | None


class VideoDetail(Video):
    configs: list[str] = Field(description="the index configs this video is indexed under")
    config: dict[str, Any] | None = Field(description="what this config indexed with (model, fps, intervals)")
    captions: list[Caption]
    answers: list[Answer]
    snapshots: list[Snapshot]


ERRORS = {400: {"model": Error}, 404: {"model": Error}, 500: {"model": Error}}


# ---- the app


def make_api(settings: Settings, store: Store, asker=None, jobs=None) -> FastAPI:
    app = FastAPI(title="vidindex", version="1", docs_url=None, redoc_url=None,
                  description="Search an indexed video archive, ask its videos questions as of any moment, "
                              "and ask the whole archive. Errors are JSON: {\"error\": message, \"status\": code}.")
    thumbnails = media.Thumbnails()

    async def from_model(response) -> dict:
        out = await response
        if isinstance(out, dict) and "error" in out and "status" in out:
            raise ApiError(out)
        return out

    @app.exception_handler(Exception)
    async def any_error(request: Request, error: Exception):
        described = error.described if isinstance(error, ApiError) else describe(error)
        return JSONResponse(described, status_code=described["status"])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        message = {404: "no such page or API route", 405: "method not allowed"}.get(error.status_code, str(error.detail))
        return JSONResponse({"error": message, "status": error.status_code}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'body', 'path'))}: {e['msg']}"
                             for e in error.errors()[:5])
        return JSONResponse({"error": f"bad request: {problems}", "status": 400}, status_code=400)

    # ---- page and docs

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    try:
        import swagger_ui_bundle

        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
        assets = "docs-assets/"
    except ImportError:  # the docs page then loads Swagger UI from its CDN
        assets = None

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        local = {"swagger_js_url": assets + "swagger-ui-bundle.js", "swagger_css_url": assets + "swagger-ui.css",
                 "swagger_favicon_url": assets + "favicon-32x32.png"} if assets else {}
        return get_swagger_ui_html(openapi_url="openapi.json", title="vidindex API", **local)

    # ---- API

    @app.get("/api/health", summary="liveness (needs no token)")
    def health():
        return {"ok": True}

    @app.get("/api/info", summary="the index and the models the replicas hold")
    async def info():
        models = await from_model(asker.info.remote()) if asker is not None else None
        return {"db": settings.db, "videos": store.count("videos"), "captions": store.count("captions"),
                "token": settings.token_sha256 is not None, "model": models}

    @app.get("/api/search", response_model=SearchResponse, responses=ERRORS,
             summary="find moments by words (fts), meaning (vector) or both (hybrid)")
    def search_moments(
        q: str = Query(min_length=1, max_length=1000, description="what to look for"),
        mode: Literal[MODES] = "hybrid",  # type: ignore[valid-type]
        video: str | None = Query(None, description="only this video_id"),
        t_from: str | None = Query(None, alias="from", description="from this time (seconds or HH:MM:SS)"),
        t_to: str | None = Query(None, alias="to", description="up to this time"),
        limit: int = Query(24, ge=1, le=MAX_SEARCH_LIMIT),
        answers: bool = Query(False, description="search the answers table too"),
    ):
        if video:
            catalog.video_rows(store, video)
        result = search(store, q, mode=mode, video_id=video or None, t_from=t_from or None, t_to=t_to or None,
                        limit=limit, include_answers=answers)
        hits = []
        for hit in result.to_dict()["hits"]:
            hit["name"] = (hit["uri"] or hit["video_id"]).rstrip("/").rsplit("/", 1)[-1]
            hit["thumbnail"] = f"api/videos/{hit['video_id']}/frame?t={hit['t_start']:g}"
            hits.append(hit)
        return {"query": result.query, "mode": result.mode, "hits": hits}

    @app.get("/api/videos", response_model=list[Video], summary="every indexed video and its status")
    def videos():
        return catalog.list_videos(store)

    @app.get("/api/videos/{video_id}", response_model=VideoDetail, responses=ERRORS,
             summary="one video: status, captions, answers and snapshots (oldest first)")
    def video(video_id: str, config: str | None = Query(None, description="config_id, when indexed under several")):
        return catalog.video_detail(store, video_id, config)

    @app.post("/api/videos/{video_id}/ask", response_model=AskResponse, responses=ERRORS,
              summary="ask a question as of time T (from the nearest snapshot and a replay)")
    async def ask(video_id: str, body: AskRequest = Body()):
        await run_in_threadpool(catalog.video_rows, store, video_id, body.config_id)  # 404 here, not in a replica
        at = body.at if isinstance(body.at, str) and body.at.strip().lower() == "end" else catalog.check_time(body.at, "at")
        return await from_model(asker.ask.remote(video_id, at, body.question, body.config_id, body.max_new_tokens))

    @app.get("/api/videos/{video_id}/frame", responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
             response_class=Response, summary="a JPEG of the video at time t (decoded on demand, cached)")
    def frame(video_id: str, t: str = Query("0", description="seconds or HH:MM:SS"),
              w: int = Query(DEFAULT_THUMBNAIL_WIDTH, ge=media.THUMBNAIL_WIDTHS[0], le=media.THUMBNAIL_WIDTHS[1],
                             description="width in pixels")):
        row = catalog.video_rows(store, video_id)[0]
        jpeg = thumbnails.get(video_id, row["uri"], catalog.check_time(t, "t"), w, row.get("duration_s"))
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @app.api_route("/api/videos/{video_id}/source", methods=["GET", "HEAD"], response_class=Response,
                   responses={**ERRORS, 206: {"description": "the bytes of a Range request"}},
                   summary="the video file (HTTP Range requests, so a player can seek)")
    def source(video_id: str, request: Request):
        uri = catalog.video_rows(store, video_id)[0]["uri"]
        size = media.video_size(uri, store.fs_options)
        try:
            byte_range = media.parse_range(request.headers.get("range"), size)
        except media.RangeNotSatisfiable as error:
            return JSONResponse({"error": str(error), "status": 416}, status_code=416,
                                headers={"Content-Range": f"bytes */{size}"})
        headers = byte_range.headers(media.content_type(uri))
        status = 206 if byte_range.partial else 200
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return StreamingResponse(media.read_range(uri, byte_range, store.fs_options), status_code=status,
                                 headers=headers)

    @app.post("/api/archive/jobs", response_model=Job, status_code=202, responses=ERRORS,
              summary="ask one question of many videos from their snapshots (a job; poll it)")
    async def submit_job(body: JobRequest = Body()):
        out = await from_model(jobs.submit.remote(body.question, body.where, str(body.at), body.force))
        return {**out["job"], "new": out["new"]}

    @app.get("/api/archive/jobs", response_model=list[Job], summary="jobs, newest first (without results)")
    async def list_jobs():
        return await from_model(jobs.list.remote())

    @app.get("/api/archive/jobs/{job_id}", response_model=Job, responses=ERRORS,
             summary="a job's progress (done of total streams) and, once done, its answers")
    async def job(job_id: str):
        catalog.check_id(job_id, "job id")
        return await from_model(jobs.get.remote(job_id))

    app.add_middleware(AccessCheck, token_sha256=settings.token_sha256)
    return app
