"""Query errors. Each names the input it is about (database, video, time, filter)."""


class QueryError(ValueError):
    """A search or question cannot be answered as asked: the message says which input and why."""


class UnreadableIndexData(QueryError):
    """The index is fine as asked, but data it points to cannot be used: a snapshot blob is
    missing or damaged, or the video a replay needs cannot be read."""
