"""Search captions (and optionally answers) by words, by meaning, or both.

    hits = search("/data/db", "red balloon over the harbor", mode="hybrid", t_from="00:10:00")

- fts: BM25 over the captions' full-text index (score: BM25, higher is better).
- vector: the store's caption embedding model embeds the query; nearest captions by cosine
  distance (score: 1 - distance, higher is better).
- hybrid (default): reciprocal-rank fusion of the fts and vector lists, score = sum of
  1 / (RRF_K + rank) over the lists a caption appears in (rank from 1).

Answers (question + answer text of the answers table) join with `include_answers=True`: they
have no index or embedding of their own, so they are matched by words (every query word must
appear, case-insensitive, scanned with SQL LIKE; oldest first) and fused into the result by RRF,
in every mode, weighted as many times as there are caption lists (2 in hybrid).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from vidindex.query.common import DEFAULT_ASK_QUESTION, ask_command, check_where, open_store, parse_seconds
from vidindex.query.errors import QueryError
from vidindex.store import Store
from vidindex.store.sql import and_clauses, eq, sql_literal
from vidindex.timefmt import from_ms

MODES = ("fts", "vector", "hybrid")
RRF_K = 60
# Each list fused by RRF is fetched deeper than the result, so a hit ranked low by one method
# but high by the other still makes it.
CANDIDATES_PER_HIT = 4
MAX_CANDIDATES = 400
CAPTION_COLUMNS = ["video_id", "config_id", "t_start_ms", "t_end_ms", "text"]


@dataclass
class SearchHit:
    source: str  # "caption" or "answer"
    video_id: str
    config_id: str
    uri: str | None
    t_start: float  # seconds; an answer's moment has t_start == t_end
    t_end: float
    text: str
    score: float
    ask_command: str


@dataclass
class SearchResult:
    query: str
    mode: str
    db: str
    hits: list[SearchHit] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"query": self.query, "mode": self.mode, "db": self.db, "hits": [asdict(h) for h in self.hits]}


def reciprocal_rank_fusion(ranked_lists: list[list], key, k: int = RRF_K,
                           weights: list[float] | None = None) -> list[tuple[object, float]]:
    """Items of several best-first lists, ordered by the sum of weight / (k + rank) over the lists
    they appear in (rank from 1, weight 1 unless given); ties keep first-seen order."""
    scores: dict = {}
    items: dict = {}
    for ranked, weight in zip(ranked_lists, weights or [1.0] * len(ranked_lists)):
        for rank, item in enumerate(ranked, start=1):
            item_key = key(item)
            scores[item_key] = scores.get(item_key, 0.0) + weight / (k + rank)
            items.setdefault(item_key, item)
    order = sorted(scores, key=lambda item_key: -scores[item_key])  # sorted() is stable
    return [(items[item_key], scores[item_key]) for item_key in order]


def search(
    db: str | Store,
    query: str,
    *,
    mode: str = "hybrid",
    video_id: str | None = None,
    config_id: str | None = None,
    t_from: float | str | None = None,
    t_to: float | str | None = None,
    where: str | None = None,
    limit: int = 10,
    include_answers: bool = False,
    ask_question: str = DEFAULT_ASK_QUESTION,
) -> SearchResult:
    """Best `limit` moments for `query`. Filters: one video (id or URI) and/or config; the time
    range [t_from, t_to] (seconds or HH:MM:SS; a caption matches when its window overlaps it);
    `where`, an SQL predicate on the captions table (and on answers, with include_answers).
    A caption window (t_start, t_end] matches a time range when they overlap."""
    if mode not in MODES:
        raise QueryError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(query, str) or not query.strip():
        raise QueryError("empty search query")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise QueryError(f"--limit must be a whole number > 0, got {limit!r}")
    store = open_store(db)
    from_ms_, to_ms_ = _time_range(t_from, t_to)
    if store.count("captions") == 0:
        raise QueryError(f"no captions in {store.uri}: nothing is indexed yet (run vidindex index first)")
    video_rows = _videos_by_key(store)
    if video_id is not None:
        matching = [row for row in video_rows.values() if video_id in (row["video_id"], row["uri"])]
        if not matching:
            raise QueryError(f"unknown video {video_id!r} in {store.uri} ({len(video_rows)} video rows indexed)")
        video_id = matching[0]["video_id"]
    if config_id is not None and not any(key[1] == config_id for key in video_rows):
        raise QueryError(f"unknown config {config_id!r} in {store.uri}")
    check_where(store, "captions", where)
    if include_answers:
        check_where(store, "answers", where)

    depth = min(MAX_CANDIDATES, max(limit, limit * CANDIDATES_PER_HIT)) if mode == "hybrid" or include_answers else limit
    key_filter = and_clauses(eq("video_id", video_id), eq("config_id", config_id))
    caption_filter = and_clauses(
        key_filter, where,
        None if from_ms_ is None else f"t_end_ms >= {from_ms_}",
        None if to_ms_ is None else f"t_start_ms < {to_ms_}",  # windows are (t_start, t_end]
    )
    lists: list[list[dict]] = []
    weights: list[float] = []
    if mode in ("fts", "hybrid"):
        lists.append(_caption_fts(store, query, caption_filter, depth))
        weights.append(1.0)
    if mode in ("vector", "hybrid"):
        lists.append(_caption_vector(store, query, caption_filter, depth))
        weights.append(1.0)
    if include_answers:
        answer_filter = and_clauses(
            key_filter, where,
            None if from_ms_ is None else f"t_ms >= {from_ms_}",
            None if to_ms_ is None else f"t_ms <= {to_ms_}",
        )
        lists.append(_answers_by_words(store, query, answer_filter, depth))
        # One list stands in for every caption method: an answer holding all the query's words
        # weighs as much as a caption ranked the same by each method.
        weights.append(float(len(weights)))

    if len(lists) == 1:
        ranked = [(row, row["_score"]) for row in lists[0]]
    else:
        ranked = reciprocal_rank_fusion(
            lists, key=lambda row: (row["_source"], row["video_id"], row["config_id"], row["t_end_ms"], row.get("question_id")),
            weights=weights,
        )
    configs_per_video: dict[str, int] = {}
    for vid, _cid in video_rows:
        configs_per_video[vid] = configs_per_video.get(vid, 0) + 1
    hits = []
    for row, score in ranked[:limit]:
        video = video_rows.get((row["video_id"], row["config_id"]), {})
        t_end = from_ms(row["t_end_ms"])
        hits.append(SearchHit(
            source=row["_source"], video_id=row["video_id"], config_id=row["config_id"], uri=video.get("uri"),
            t_start=from_ms(row["t_start_ms"]), t_end=t_end, text=row["text"], score=float(score),
            ask_command=ask_command(
                row["video_id"], t_end, ask_question, store.uri,
                row["config_id"] if configs_per_video.get(row["video_id"], 0) > 1 else None,
            ),
        ))
    return SearchResult(query=query, mode=mode, db=store.uri, hits=hits)


def _time_range(t_from, t_to) -> tuple[int | None, int | None]:
    from_s = None if t_from is None else parse_seconds(t_from, "--from")
    to_s = None if t_to is None else parse_seconds(t_to, "--to")
    if from_s is not None and to_s is not None and from_s > to_s:
        raise QueryError(f"--from {t_from!r} is after --to {t_to!r}")
    return (None if from_s is None else round(from_s * 1000)), (None if to_s is None else round(to_s * 1000))


def _videos_by_key(store: Store) -> dict[tuple[str, str], dict]:
    rows = store.rows("videos").select(["video_id", "config_id", "uri"]).to_pylist()
    return {(row["video_id"], row["config_id"]): row for row in rows}


def _run(store: Store, search, where: str | None, limit: int, what: str, score_column: str) -> list[dict]:
    if where:
        search = search.where(where, prefilter=True)
    try:
        return search.select(CAPTION_COLUMNS + [score_column]).limit(limit).to_list()
    except Exception as error:  # noqa: BLE001 - name the query and the database
        raise QueryError(f"{what} search failed in {store.uri}: {str(error).strip().splitlines()[0][:300]}") from None


def _caption_fts(store: Store, query: str, where: str | None, limit: int) -> list[dict]:
    table = store.table("captions")
    if not any(index.columns == ["text"] for index in table.list_indices()):
        raise QueryError(f"captions in {store.uri} have no full-text index (the store creates one; was the table altered?)")
    rows = _run(store, table.search(query, query_type="fts"), where, limit, "full-text", "_score")
    for row in rows:
        row["_source"] = "caption"
    return rows


def _caption_vector(store: Store, query: str, where: str | None, limit: int) -> list[dict]:
    vector = store.embedder.embed([query])[0]
    search = store.table("captions").search(vector, vector_column_name="embedding").distance_type("cosine")
    rows = _run(store, search, where, limit, "vector", "_distance")
    for row in rows:
        row["_source"] = "caption"
        row["_score"] = 1.0 - float(row.pop("_distance"))
    return rows


def _answers_by_words(store: Store, query: str, where: str | None, limit: int) -> list[dict]:
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 1] or [query.strip().lower().replace("%", "")]
    text = "lower(question || ' ' || answer)"
    word_filter = " AND ".join(f"{text} LIKE {sql_literal('%' + w + '%')}" for w in words)
    rows = store.rows("answers", where=and_clauses(where, word_filter)).to_pylist()
    rows.sort(key=lambda row: (row["t_ms"], row["video_id"]))
    out = []
    for row in rows[:limit]:
        out.append({
            "_source": "answer", "_score": 1.0, "video_id": row["video_id"], "config_id": row["config_id"],
            "question_id": row["question_id"], "t_start_ms": row["t_ms"], "t_end_ms": row["t_ms"],
            "text": f"Q: {row['question']} A: {row['answer']}",
        })
    return out

