"""User-facing errors: a mistake in the input is reported as one line with exit code 2, no traceback."""


class UserError(Exception):
    """Raised for bad input the user can fix (config values, data folders, files).

    The message must say what is wrong and how to fix it, in one line.
    """
