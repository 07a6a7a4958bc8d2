"""Row builders shared by the store tests, and a checkpoint as the engine makes one."""

from vidindex.store import write_snapshot_blob
from vidindex.timefmt import to_ms

VIDEO = "vid-a"
CONFIG = "cfg0123456789"


def video_row(video_id=VIDEO, config_id=CONFIG, **columns):
    return {"video_id": video_id, "config_id": config_id, "uri": f"/videos/{video_id}.mp4", **columns}


def caption(i, text=None, video_id=VIDEO, config_id=CONFIG, interval_ms=30_000):
    return {
        "video_id": video_id, "config_id": config_id, "t_start_ms": i * interval_ms,
        "t_end_ms": (i + 1) * interval_ms, "text": text or f"window {i}: an empty parking lot",
    }


def answer(question_id, t_ms, text="yes", video_id=VIDEO, config_id=CONFIG):
    return {"video_id": video_id, "config_id": config_id, "question_id": question_id, "t_ms": t_ms,
            "question": f"question {question_id}?", "answer": text}


def checkpoint(committer, t, state, rows=None, video_id=VIDEO, config_id=CONFIG, **kwargs):
    """What the engine does at a checkpoint: write the blob at its place, then commit it with its rows."""
    blob = write_snapshot_blob(committer.snapshot_root, video_id, config_id, to_ms(t), state, committer.fs_options)
    return committer.commit_checkpoint(video_id, config_id, t, blob, rows, **kwargs)
