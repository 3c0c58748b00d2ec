"""Error types: everything a user's config, data or files can get wrong, with a message that
names the setting or file and the fault."""


class ConfigError(ValueError):
    """A config key, value or CLI option is invalid; the message lists what is valid."""


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss); the message says where and why."""


class DataError(Exception):
    """Bad input data or files: the message names the file and what is wrong with it."""


class SourceUnavailable(DataError):
    """A raw source could not be found locally nor downloaded (the message says where to put it)."""
