"""vidindex: index archives of long videos with InfiniteVL."""

__version__ = "0.1.0"
