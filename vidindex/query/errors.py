"""Query errors. Each names the input it is about (database, video, time, filter)."""


class QueryError(ValueError):
    """A search or question cannot be answered as asked: the message says which input and why."""
