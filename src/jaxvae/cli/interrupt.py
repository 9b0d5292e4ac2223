"""Ctrl-C and SIGTERM: how a command is interrupted, and what it says then."""

import contextlib
import shlex
import signal
import threading
from pathlib import Path


@contextlib.contextmanager
def interruptible():
    """Within the block, SIGINT (Ctrl-C) and SIGTERM raise KeyboardInterrupt, whatever the dispositions the
    process inherited: a shell starts a background job with SIGINT ignored, and Python then installs no
    handler of its own. The previous handlers are restored after the block."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {s: signal.signal(s, signal.default_int_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def how_to_resume(args) -> str:
    """'; ... continue with: jaxvae train --resume --out RUN' when a checkpoint of the run exists."""
    from jaxvae.runs import epoch_checkpoints

    out = getattr(args, "out", None)
    found = sorted(Path(out).glob("*/checkpoints/epoch-*.eqx")) + epoch_checkpoints(Path(out)) if out else []
    if not found:
        return "; nothing was saved" if out else ""
    return f"; {found[-1]} is saved: continue with: jaxvae train --resume --out {shlex.quote(out)}"
