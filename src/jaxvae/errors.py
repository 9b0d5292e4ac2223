"""The exceptions the CLI reports on one line: bad input or usage (exit 2) and a diverged run (exit 1)."""


class InputError(ValueError):
    """Raised for anything the user can fix: a bad path, option, file or value."""


class Diverged(FloatingPointError):
    """The loss or the parameters became NaN or infinite; the checkpoints hold the last good epoch."""
