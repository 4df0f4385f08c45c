"""Errors a user can fix (bad names, files, options): the CLI prints them without a traceback."""


class BoltzflowError(Exception):
    """A mistake in the user's input, with a message that says what is expected."""
