"""Errors a user can fix (bad names, files, options): the CLI prints them without a traceback."""


class BoltzflowError(Exception):
    """A mistake in the user's input, with a message that says what is expected."""


def invalid_setting(key: str, value: object, expected: str) -> BoltzflowError:
    """The error for setting ``key`` (dotted, as in config.toml and ``--set``) holding ``value``."""
    return BoltzflowError(f"setting '{key}' = {value!r}: expected {expected}")
