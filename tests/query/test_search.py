"""Search over an engine-built archive: full text, vector and hybrid each find a planted
caption; video, time and SQL filters exclude what they should."""

import pytest

from vidindex.query import RRF_K, reciprocal_rank_fusion, search
from vidindex.store import Committer
from vidindex.timefmt import parse_time

from .conftest import PLANTED


def top(result):
    assert result.hits, f"no hits for {result.query!r}"
    return result.hits[0]


def planted_hit(archive, name):
    video, t_end, text = PLANTED[name]
    return archive.video_ids[video], t_end, text


def test_full_text_finds_planted_caption(archive):
    video_id, t_end, text = planted_hit(archive, "balloon")
    hit = top(search(archive.db, "balloon harbor", mode="fts"))
    assert (hit.video_id, hit.t_end, hit.t_start, hit.text) == (video_id, t_end, t_end - 2.0, text)
    assert hit.source == "caption"
    assert hit.uri == archive.uris["cam0.mp4"]
    assert hit.config_id == archive.config.config_id
    assert hit.score > 0
    assert hit.ask_command == (f"vidindex ask {video_id} --at 00:00:06 'What is happening?' --db {archive.db}")


def test_a_quoted_phrase_matches_its_words_in_order(archive):
    video_id, t_end, text = planted_hit(archive, "truck")
    hit = top(search(archive.db, '"delivery truck"', mode="fts"))
    assert (hit.video_id, hit.t_end, hit.text) == (video_id, t_end, text)
    assert not search(archive.db, '"truck delivery"', mode="fts").hits  # the same words out of order


def test_vector_finds_planted_caption_by_meaning(archive):
    video_id, t_end, text = planted_hit(archive, "sandcastle")
    query = "kids making sand castles seaside"  # no word of the caption
    hit = top(search(archive.db, query, mode="vector"))
    assert (hit.video_id, hit.t_end, hit.text) == (video_id, t_end, text)
    assert 0 < hit.score <= 1  # 1 - cosine distance
    words = search(archive.db, query, mode="fts", limit=50)
    assert text not in [h.text for h in words.hits]


def test_hybrid_fuses_both_lists(archive):
    video_id, t_end, text = planted_hit(archive, "truck")
    result = search(archive.db, "delivery truck warehouse", limit=5)
    assert result.mode == "hybrid"
    hit = top(result)
    assert (hit.video_id, hit.t_end, hit.text) == (video_id, t_end, text)
    # first in the full-text and in the vector list
    assert hit.score == pytest.approx(2 / (RRF_K + 1))
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


def test_reciprocal_rank_fusion():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], key=lambda x: x, k=60)
    assert [item for item, _ in fused] == ["a", "c", "b"]
    assert dict(fused) == pytest.approx({"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62})


def test_video_filter(archive):
    other = archive.video_ids["cam1.mp4"]
    balloon, truck = PLANTED["balloon"][2], PLANTED["truck"][2]
    for mode in ("fts", "vector", "hybrid"):
        everywhere = [h.text for h in search(archive.db, "balloon truck", mode=mode, limit=50).hits]
        assert balloon in everywhere and truck in everywhere
        result = search(archive.db, "balloon truck", mode=mode, video_id=other, limit=50)
        assert {h.video_id for h in result.hits} == {other}
        assert truck in [h.text for h in result.hits] and balloon not in [h.text for h in result.hits]
    by_uri = search(archive.db, "balloon harbor", video_id=archive.uris["cam0.mp4"])
    assert top(by_uri).text == PLANTED["balloon"][2]


@pytest.mark.parametrize("mode", ["fts", "vector", "hybrid"])
def test_time_filter(archive, mode):
    text = PLANTED["balloon"][2]  # window (4 s, 6 s] of cam0

    def texts(**window):
        result = search(archive.db, "balloon harbor", mode=mode, limit=100, **window)
        for hit in result.hits:  # every hit's window overlaps the range
            assert hit.t_end >= parse_time(window.get("t_from", 0))
            assert hit.t_start < parse_time(window.get("t_to", 1e9))
        return [h.text for h in result.hits]

    assert text in texts(t_from="00:00:05", t_to="00:00:05.5")
    assert text in texts(t_from=6)
    assert text not in texts(t_from=6.5)
    assert text not in texts(t_to=4)  # (4, 6] does not reach back to 4
    assert text not in texts(t_from="00:00:08", t_to="00:00:10")


def test_sql_where_filter(archive):
    text = PLANTED["balloon"][2]
    kept = search(archive.db, "balloon harbor", where="t_end_ms <= 6000", limit=100)
    assert top(kept).text == text and all(h.t_end <= 6 for h in kept.hits)
    dropped = search(archive.db, "balloon harbor", where="t_end_ms > 6000", limit=100)
    assert text not in [h.text for h in dropped.hits]


def test_answers_join_when_asked_for(archive):
    video_id = archive.video_ids["cam2.mp4"]
    committer = Committer(archive.db, archive.config.snapshot_root)
    committer.upsert("answers", [{"video_id": video_id, "config_id": archive.config.config_id,
                                  "question_id": "lighthouse", "t_ms": 8000,
                                  "question": "Is the lighthouse lit?", "answer": "the lighthouse lamp is on"}])
    with_answers = search(archive.db, "lighthouse lamp", include_answers=True)
    hit = top(with_answers)
    assert (hit.source, hit.video_id, hit.t_start, hit.t_end) == ("answer", video_id, 8.0, 8.0)
    assert hit.text == "Q: Is the lighthouse lit? A: the lighthouse lamp is on"
    assert "answer" not in {h.source for h in search(archive.db, "lighthouse lamp").hits}
    assert "answer" not in {h.source for h in search(archive.db, "lighthouse lamp", include_answers=True, t_to=7).hits}
