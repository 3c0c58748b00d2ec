"""Error types for configuration and training problems the user can fix."""


class ConfigError(ValueError):
    """A config key, value or CLI option is invalid; the message lists what is valid."""


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss); the message says where and why."""
