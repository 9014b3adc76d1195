"""The error raised for any configuration problem a user can cause."""


class ConfigError(ValueError):
    """A bad config file, key or value. The message is one line naming the file, line or key."""
