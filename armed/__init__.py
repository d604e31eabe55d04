"""armed: AR-Med style relevance judgment for online-pharmacy search."""

__version__ = "0.1.0"
