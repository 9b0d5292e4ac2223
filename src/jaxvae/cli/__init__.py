"""The `jaxvae` command: parses arguments and calls the library, one module per command.

Exit codes: 0 success, 2 bad input or usage, or a file that cannot be written (one line on stderr), 1 anything
unexpected.
"""

import gc
import sys

from jaxvae.cli import encode, evaluate, explore, plot, sample, train
from jaxvae.cli.interrupt import how_to_resume, interruptible
from jaxvae.cli.parser import build_parser, in_options
from jaxvae.errors import Diverged, ImageSizesDiffer, InputError

COMMANDS = {"train": train, "explore": explore, "evaluate": evaluate, "sample": sample, "plot": plot, "encode": encode}

__all__ = ["build_parser", "main", "run"]


def main(argv: list[str] | None = None) -> int:
    """Run the command of `argv` (default: the process's arguments) and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        with interruptible():
            return COMMANDS[args.command].run(args)
    except ImageSizesDiffer as e:  # from a command that evaluates a run (train says: pass --image-size)
        print(f"jaxvae: error: {e}: resize them to the size the run was trained on", file=sys.stderr)
        return 2
    except InputError as e:
        print(f"jaxvae: error: {in_options(e, args)}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written (a read-only folder, a full disk), a port in use
        print(f"jaxvae: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"jaxvae: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"jaxvae: interrupted{how_to_resume(args)}", file=sys.stderr)
        return 130


def run(argv: list[str] | None = None) -> None:
    """The `jaxvae` command: `main`, then an exit that skips the interpreter's last garbage collection,
    which walks every object JAX has made (0.3 s). Nothing waits for it: jaxvae closes its files itself."""
    code = main(argv)
    gc.freeze()
    sys.exit(code)
