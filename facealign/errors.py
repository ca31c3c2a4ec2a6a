"""Errors a user can fix: printed as one line by the CLI, never a traceback."""


class UserError(Exception):
    """A problem with the user's input or request."""
