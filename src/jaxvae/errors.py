"""The exceptions the CLI reports on one line: bad input or usage (exit 2) and a diverged run (exit 1)."""


class InputError(ValueError):
    """Raised for anything the user can fix: a bad path, option, file or value."""


class SettingError(InputError):
    """A setting that is not valid. The message names the settings by their field names, listed in `settings`
    in the order it names them, so that a front end can write them as its own options."""

    def __init__(self, message: str, *settings: str):
        super().__init__(message)
        self.settings = settings


class Diverged(FloatingPointError):
    """The loss or the parameters became NaN or infinite; the checkpoints hold the last good epoch."""


class ImageSizesDiffer(InputError):
    """A folder's images differ in size and no size to resize them to was given; each command adds what
    it can do about it."""
