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
    """'; RUN/checkpoints/epoch-00003.eqx is saved: continue with: jaxvae train --resume --out RUN' when a
    checkpoint of the run exists; for a sweep, what every member saved."""
    from jaxvae.runs import epoch_checkpoints, epochs_done

    out = getattr(args, "out", None)
    if not out:
        return ""
    resume = f"continue with: jaxvae train --resume --out {shlex.quote(out)}"
    members = sorted(p.parent for p in Path(out).glob("*/config.json"))
    if (Path(out) / "sweep.json").is_file() and members:
        epochs = [epochs_done(m) for m in members]
        done = sorted(set(epochs) - {0})
        if not done:
            return "; nothing was saved"
        saved = f"epoch {done[0]}" if len(done) == 1 else f"epochs {done[0]} to {done[-1]}"
        missing = epochs.count(0)
        who = "every member of the sweep is saved" if not missing else f"{len(members) - missing} members are saved"
        return f"; {who} ({saved}): {resume}"
    found = epoch_checkpoints(Path(out))
    if not found:
        return "; nothing was saved"
    return f"; {found[-1]} is saved: {resume}"
