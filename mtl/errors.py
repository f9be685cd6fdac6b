"""Errors a user can fix. main.py prints them as one paragraph (no traceback) and exits with status 2."""


class UserError(Exception):
    """Bad input from the user: unknown config, bad option value, missing data, existing run, ...

    The message should say what is wrong and what to do about it.
    """
