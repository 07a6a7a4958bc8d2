"""Row builders shared by the store tests."""

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
