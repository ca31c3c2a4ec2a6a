"""The CLI's error for a user's mistake: printed as one line by facealign/cli.py, never a
traceback. Commands raise it; library layers raise their own types (ConfigError,
DataError, serving.errors.InputError), which the CLI prints the same way."""


class UserError(Exception):
    """A problem with the user's input or request."""
