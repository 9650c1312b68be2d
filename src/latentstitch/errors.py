"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class ConfigError(ValueError):
    """Bad input or an unusable setting. The message names the setting and how to fix it."""
