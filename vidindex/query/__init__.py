"""Querying an index: search moments, ask a video as of a time, ask the whole archive.

    from vidindex.query import search, ask_at, ask_archive

    search(db, "red balloon", mode="hybrid", video_id=None, t_from=None, t_to=None, where=None)
    ask_at(db, video_id, "00:12:30", "What is on the table?")
    ask_archive(db, "Is it raining?", where="status = 'done'")

Each returns a dataclass with `to_dict()`; errors in the input raise QueryError naming it.
The CLI (vidindex.cli.query) is a thin layer over these.
"""

from vidindex.query.archive import (ArchiveAnswer, ArchiveResult, ArchiveSkip, answer_batch, ask_archive,
                                    question_id_for)
from vidindex.query.ask import AskResult, AsOf, ask_at, parse_at, stream_as_of
from vidindex.query.common import DEFAULT_ASK_QUESTION, open_store
from vidindex.query.errors import QueryError, UnreadableIndexData
from vidindex.query.search import MODES, RRF_K, SearchHit, SearchResult, reciprocal_rank_fusion, search

__all__ = [
    "ArchiveAnswer", "ArchiveResult", "ArchiveSkip", "AskResult", "AsOf", "DEFAULT_ASK_QUESTION", "MODES",
    "QueryError", "RRF_K", "SearchHit", "SearchResult", "answer_batch", "ask_archive", "ask_at", "open_store",
    "parse_at", "question_id_for", "reciprocal_rank_fusion", "search", "stream_as_of", "UnreadableIndexData",
]
