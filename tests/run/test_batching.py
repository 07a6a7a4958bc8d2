"""Continuous batching on a real Ray cluster: an actor's free slot takes the next video at once,
it does not wait for the other videos it runs to end."""

from __future__ import annotations

from tests.run.conftest import index_args
from tests.run.tables import table_rows
from vidindex.cli.index import config_from_args
from vidindex.cli.main import build_parser
from vidindex.run.pipeline import run_index


def test_a_freed_slot_takes_the_next_video_before_the_long_one_ends(ray_cluster, tmp_path, tiny_model_dir, videos,
                                                                     long_video):
    short_long_short = [videos["good2"], long_video, videos["good1"]]
    args = index_args(tmp_path / "db", tiny_model_dir, *short_long_short, extra=["--streams-per-gpu", "2"])
    config = config_from_args(build_parser().parse_args(args))
    events = []
    report = run_index(config, short_long_short, actors=1, on_events=events.extend)

    assert report.actors == 1 and [v["status"] for v in report.videos] == ["done"] * 3
    assert len({v["pid"] for v in report.videos}) == 1
    order = [(e["kind"], e["uri"]) for e in events if e["kind"] in ("start", "finish")]
    starts = [i for i, (kind, _) in enumerate(order) if kind == "start"]
    first_finish = min(i for i, (kind, _) in enumerate(order) if kind == "finish")
    long_finish = order.index(("finish", long_video))
    assert len(starts) == 3
    assert first_finish < starts[2] < long_finish  # two slots: the third waited for one, not for the long video
    assert len(table_rows(str(tmp_path / "db"), "videos")) == 3
