"""The one exception type for bad input or usage: the CLI prints it on one line and exits 2."""


class InputError(ValueError):
    """Raised for anything the user can fix: a bad path, option, file or value."""
