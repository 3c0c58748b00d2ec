"""Error types for everything a user's data or files can get wrong."""


class DataError(Exception):
    """Bad input data or files: the message names the file and what is wrong with it."""


class SourceUnavailable(DataError):
    """A raw source could not be found locally nor downloaded (the message says where to put it)."""
