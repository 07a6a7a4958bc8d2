"""Errors as the service answers them: JSON {"error": message, "status": code}, never a
traceback. Input errors are 400 (404 for what does not exist), as the CLI's usage errors (exit
2); failures of the index, the model, the storage or the cluster are 500, as the CLI's exit 1."""

from __future__ import annotations

import logging

from vidindex.cli.output import one_line as printable_line
from vidindex.config import ConfigError
from vidindex.model import ModelError
from vidindex.query.errors import QueryError, UnreadableIndexData
from vidindex.run.ray import ClusterError
from vidindex.serve.catalog import NotFound
from vidindex.serve.media import NoFrame, RangeNotSatisfiable
from vidindex.store import StoreError
from vidindex.video import VideoError, VideoNotFound

logger = logging.getLogger("vidindex.serve")
MAX_MESSAGE = 2000


def describe(error: BaseException) -> dict:
    """{"error": one line, "status": HTTP status} for any exception; unexpected ones are logged
    here (with their traceback, in the service's log only)."""
    if isinstance(error, (NotFound, NoFrame)):
        status = 404
    elif isinstance(error, RangeNotSatisfiable):
        status = 416
    elif isinstance(error, (QueryError, ConfigError)) and not isinstance(error, UnreadableIndexData):
        status = 400
    elif isinstance(error, VideoNotFound):
        status = 404
    elif isinstance(error, (UnreadableIndexData, StoreError, ModelError, VideoError, ClusterError)):
        status = 500
    else:
        logger.exception("unexpected error", exc_info=error)
        return {"error": f"internal error ({type(error).__name__}); the service log has the details", "status": 500}
    return {"error": one_line(error), "status": status}


def one_line(text) -> str:
    line = printable_line(text)
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."
