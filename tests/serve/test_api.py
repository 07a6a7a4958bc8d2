"""The JSON API against the real app (Ray Serve, the tiny model, LanceDB): the same answers and
errors as the Python API, thumbnails, the video in byte ranges, ask-archive jobs."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from tests.serve.conftest import PLANTED
from vidindex.query import ask_at, search

BALLOON_VIDEO, BALLOON_T_END, BALLOON_TEXT = PLANTED["balloon"]


def no_traceback(response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text, response.text


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    no_traceback(response)
    body = response.json()
    assert body["status"] == status and body["error"]
    return body["error"]


# ---- videos


def test_videos_lists_every_indexed_video_with_its_status(client, service):
    videos = {v["name"]: v for v in client.get("api/videos").json()}
    assert set(videos) == {"cam0.mp4", "cam1.mp4", "cam2.mp4", "broken.mp4"}
    assert {name: v["status"] for name, v in videos.items()} == {
        "cam0.mp4": "done", "cam1.mp4": "done", "cam2.mp4": "done", "broken.mp4": "failed"}
    assert "NotAVideo" in videos["broken.mp4"]["error"]
    assert videos["cam0.mp4"]["video_id"] == service.video_ids["cam0.mp4"]
    assert videos["cam0.mp4"]["caption_count"] == 5 and videos["cam0.mp4"]["duration_s"] == pytest.approx(10, abs=0.2)


def test_video_detail_has_captions_answers_and_snapshots(client, service):
    video = client.get(f"api/videos/{service.video_ids[BALLOON_VIDEO]}").json()
    assert [c["t_end"] for c in video["captions"]] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert {"t_start": BALLOON_T_END - 2, "t_end": BALLOON_T_END, "text": BALLOON_TEXT} in video["captions"]
    assert [s["t"] for s in video["snapshots"]] == [4.0, 8.0, 10.0]
    assert video["config"]["sample_fps"] == 2.0 and video["configs"] == [video["config_id"]]
    assert all(set(a) == {"question_id", "t", "question", "answer"} for a in video["answers"])


def test_unknown_video_is_404_everywhere(client):
    unknown = "0123456789abcdef01234567"
    for response in (client.get(f"api/videos/{unknown}"), client.get(f"api/videos/{unknown}/frame?t=1"),
                     client.get(f"api/videos/{unknown}/source"),
                     client.post(f"api/videos/{unknown}/ask", json={"question": "Why?", "at": 1}),
                     client.get("api/search", params={"q": "balloon", "video": unknown})):
        assert "unknown video" in error_of(response, 404)


# ---- search


@pytest.mark.parametrize("mode", ["fts", "vector", "hybrid"])
def test_search_finds_the_planted_caption_like_the_python_api(client, service, mode):
    body = client.get("api/search", params={"q": "red balloon harbor", "mode": mode, "limit": 5}).json()
    top = body["hits"][0]
    assert (top["video_id"], top["t_end"], top["text"]) == (service.video_ids[BALLOON_VIDEO], BALLOON_T_END, BALLOON_TEXT)
    assert top["name"] == BALLOON_VIDEO and top["thumbnail"] == f"api/videos/{top['video_id']}/frame?t={top['t_start']:g}"
    expected = search(service.db, "red balloon harbor", mode=mode, limit=5).hits
    assert [(h["video_id"], h["t_end"], h["text"]) for h in body["hits"]] == [(h.video_id, h.t_end, h.text) for h in expected]
    assert [h["score"] for h in body["hits"]] == pytest.approx([h.score for h in expected])


def test_search_filters_by_video_and_time(client, service):
    truck = service.video_ids["cam1.mp4"]
    hits = client.get("api/search", params={"q": "delivery truck", "video": truck, "mode": "fts"}).json()["hits"]
    assert hits and {h["video_id"] for h in hits} == {truck}
    inside = client.get("api/search", params={"q": "delivery truck", "mode": "fts", "from": "00:00:07", "to": "8"}).json()
    assert inside["hits"][0]["text"] == PLANTED["truck"][2]
    outside = client.get("api/search", params={"q": "delivery truck", "mode": "fts", "from": "9", "to": "10"}).json()
    assert PLANTED["truck"][2] not in [h["text"] for h in outside["hits"]]


@pytest.mark.parametrize("params,named", [
    ({"q": "x", "mode": "fuzzy"}, "mode"),
    ({"q": ""}, "q"),
    ({"q": "x", "from": "9", "to": "2"}, "--from '9' is after --to '2'"),
    ({"q": "x", "from": "01:99"}, "minutes and seconds must be 00-59"),
    ({"q": "x", "limit": "0"}, "limit"),
    ({"q": "x", "video": "../../etc/passwd"}, "invalid video id"),
    ({"q": "x", "video": "a' OR '1'='1"}, "invalid video id"),
])
def test_bad_search_input_is_a_400_naming_it(client, params, named):
    assert named in error_of(client.get("api/search", params=params), 400)


# ---- ask as of T


def test_ask_answers_as_the_python_api_does(client, service):
    video = service.video_ids["cam0.mp4"]
    response = client.post(f"api/videos/{video}/ask", json={"question": "What is happening?", "at": "00:00:07.3"})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = ask_at(service.db, video, 7.3, "What is happening?", device="cpu")
    assert body["answer"] == expected.answer
    assert (body["as_of"], body["snapshot_t"], body["frames_replayed"]) == (7.3, 4.0, expected.as_of.frames_replayed)
    assert body["device"] == "cpu" and {"replay_s", "ask_s", "total_s", "queued_s"} <= set(body["timings"])


def test_ask_at_the_end_and_past_it(client, service):
    video = service.video_ids["cam2.mp4"]
    end = client.post(f"api/videos/{video}/ask", json={"question": "What is happening?", "at": "end"}).json()
    past = client.post(f"api/videos/{video}/ask", json={"question": "What is happening?", "at": 99}).json()
    assert end["as_of"] == past["as_of"] == 10.0 and end["frames_replayed"] == 0
    assert end["answer"] == past["answer"] and "past the end" in past["note"]


@pytest.mark.parametrize("body,status,named", [
    ({"question": "Why?", "at": "12:99"}, 400, "minutes and seconds must be 00-59"),
    ({"question": "Why?", "at": -3}, 400, "must be a finite number of seconds >= 0"),
    ({"question": "", "at": 1}, 400, "question"),
    ({"at": 1}, 400, "question"),
    ({"question": "Why?", "at": 1, "max_new_tokens": 0}, 400, "max_new_tokens"),
    ({"question": "Why?", "at": 1, "config_id": "nope'--"}, 400, "invalid config id"),
])
def test_bad_ask_input_is_a_400_naming_it(client, service, body, status, named):
    response = client.post(f"api/videos/{service.video_ids['cam0.mp4']}/ask", json=body)
    assert named in error_of(response, status)


def test_asking_a_video_that_failed_at_open_is_a_400_with_its_failure(client, service):
    response = client.post(f"api/videos/{service.failed_id}/ask", json={"question": "Why?", "at": 1})
    assert "failed before its first snapshot" in error_of(response, 400)


def test_writes_must_be_json(client, service):
    response = client.post(f"api/videos/{service.video_ids['cam0.mp4']}/ask", content='{"question": "Why?", "at": 1}',
                           headers={"Content-Type": "text/plain"})
    assert "JSON" in error_of(response, 415)


# ---- thumbnails and the video


def test_frame_is_a_jpeg_of_the_moment(client, service):
    from PIL import Image

    video = service.video_ids["cam0.mp4"]
    response = client.get(f"api/videos/{video}/frame", params={"t": "00:00:04", "w": 200})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and image.size == (200, 150)  # 160x120 source, aspect kept
    again = client.get(f"api/videos/{video}/frame", params={"t": "4.0", "w": 200})
    assert again.content == response.content  # from the cache
    assert client.get(f"api/videos/{video}/frame", params={"t": 4.5, "w": 200}).content != response.content
    past = client.get(f"api/videos/{video}/frame", params={"t": 999})  # clamped to the last frame
    assert past.status_code == 200 and past.content[:2] == b"\xff\xd8"


@pytest.mark.parametrize("params,named", [({"t": "abc"}, "invalid time"), ({"t": "1", "w": 9999}, "w"),
                                          ({"t": "1e9"}, "past the end")])
def test_bad_frame_input_is_a_400(client, service, params, named):
    assert named in error_of(client.get(f"api/videos/{service.video_ids['cam0.mp4']}/frame", params=params), 400)


def test_frame_of_a_file_that_is_not_a_video_is_a_clear_error(client, service):
    assert "not a video" in error_of(client.get(f"api/videos/{service.failed_id}/frame", params={"t": 0}), 500)


def test_source_serves_the_video_in_byte_ranges(client, service):
    video = service.video_ids["cam1.mp4"]
    data = Path(service.paths["cam1.mp4"]).read_bytes()
    whole = client.get(f"api/videos/{video}/source")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    for header, (start, end) in {"bytes=100-199": (100, 199), "bytes=1000-": (1000, len(data) - 1),
                                 "bytes=-500": (len(data) - 500, len(data) - 1),
                                 f"bytes=10-{len(data) + 50}": (10, len(data) - 1)}.items():
        part = client.get(f"api/videos/{video}/source", headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == data[start:end + 1], header
        assert part.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    head = client.head(f"api/videos/{video}/source", headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.headers["content-length"] == "10" and not head.content
    beyond = client.get(f"api/videos/{video}/source", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_byte_ranges_of_an_object_store_uri():
    """Videos indexed from fsspec URIs are read through the same layer (memory:// stands in for s3://)."""
    import fsspec

    from vidindex.serve import media

    data = bytes(range(256)) * 40
    with fsspec.open("memory://bucket/clips/a.webm", "wb") as f:
        f.write(data)
    uri = "memory://bucket/clips/a.webm"
    size = media.video_size(uri)
    part = media.parse_range("bytes=1000-1999", size)
    assert size == len(data) and b"".join(media.read_range(uri, part)) == data[1000:2000]
    assert media.content_type(uri) == "video/webm"


# ---- ask the archive


def wait_for(client, job_id: str, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"api/archive/jobs/{job_id}").json()
        seen.append((job["state"], job["done"], job["total"]))
        if job["state"] in ("done", "failed"):
            return {**job, "seen": seen}
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {seen[-5:]}")


def test_archive_job_answers_every_video_and_is_idempotent(client, service):
    question = "Is there a red balloon?"
    submitted = client.post("api/archive/jobs", json={"question": question})
    assert submitted.status_code == 202, submitted.text
    job = wait_for(client, submitted.json()["id"])
    assert job["state"] == "done", job["error"]
    assert (job["done"], job["total"]) == (3, 3)
    assert all(done <= (total or 0) for _, done, total in job["seen"] if total is not None)
    result = job["result"]
    assert sorted(a["uri"].rsplit("/", 1)[-1] for a in result["answers"]) == ["cam0.mp4", "cam1.mp4", "cam2.mp4"]
    assert not any(a["cached"] for a in result["answers"]) and result["written"] == 3 and result["ran_on"] == "serve"
    assert [s["video_id"] for s in result["skipped"]] == [service.failed_id]
    # The answers are in the table (the video page shows them), and asking again asks nothing.
    video = client.get(f"api/videos/{service.video_ids['cam0.mp4']}").json()
    assert [a["question"] for a in video["answers"] if a["question_id"] == result["question_id"]] == [question]
    again = wait_for(client, client.post("api/archive/jobs", json={"question": question}).json()["id"])
    assert again["result"]["written"] == 0 and all(a["cached"] for a in again["result"]["answers"])
    assert [a["answer"] for a in again["result"]["answers"]] == [a["answer"] for a in result["answers"]]
    listed = client.get("api/archive/jobs").json()
    assert {job["id"], again["id"]} <= {j["id"] for j in listed} and all(j["result"] is None for j in listed)


def test_archive_job_with_a_where_and_a_time(client, service):
    body = {"question": "What colour is it?", "where": "uri LIKE '%cam2%'", "at": "00:00:05"}
    job = wait_for(client, client.post("api/archive/jobs", json=body).json()["id"])
    assert job["state"] == "done" and [a["t"] for a in job["result"]["answers"]] == [4.0]


@pytest.mark.parametrize("body,named", [
    ({"question": "Why?", "where": "no_such_column = 1"}, "bad --where filter"),
    ({"question": "Why?", "at": "soon"}, "invalid time"),
    ({"question": "   "}, "empty question"),
])
def test_bad_archive_job_is_refused_at_submit(client, body, named):
    assert named in error_of(client.post("api/archive/jobs", json=body), 400)


def test_unknown_and_hostile_job_ids(client):
    assert "no archive job" in error_of(client.get("api/archive/jobs/0123456789abcdef"), 404)
    assert "invalid job id" in error_of(client.get("api/archive/jobs/a'b"), 400)


# ---- docs


def test_openapi_docs_work_offline(client):
    docs = client.get("docs")
    assert docs.status_code == 200 and "docs-assets/swagger-ui-bundle.js" in docs.text and "cdn." not in docs.text
    assert client.get("docs-assets/swagger-ui-bundle.js").status_code == 200
    paths = client.get("openapi.json").json()["paths"]
    assert {"/api/search", "/api/videos/{video_id}/ask", "/api/archive/jobs", "/api/videos/{video_id}/source"} <= set(paths)
