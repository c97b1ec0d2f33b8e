"""Fault injection: named kill points and I/O errors, switched on by one environment variable.

The steps whose interruption could leave shared state behind (push's copy, rename and registry
writes, a stage's scratch directory before it is renamed into place) call ``point(name)``.
Outside a test the variable is unset and a point is one dictionary lookup. A test sets

    KUBETFX_FAULTS="push.after_rename"              # SIGKILL this process there: no cleanup runs
    KUBETFX_FAULTS="push.mid_copy=oserror"          # raise OSError(EIO) there instead
    KUBETFX_FAULTS="push.mid_registry_write=enospc" # raise OSError(ENOSPC) ("disk full")

(several points: comma-separated) and runs the real code — a whole ``submit.py`` run, or one
stage in a child process — so a crash is reproduced at an exact step, never by timing. The
points each module offers are listed in its docstring and in docs/reliability.md.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "KUBETFX_FAULTS"
KILL, OSERROR, ENOSPC = "kill", "oserror", "enospc"


def point(name: str) -> None:
    """Do what ``KUBETFX_FAULTS`` asks for at ``name``: nothing, a SIGKILL, or an OSError."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        target, _, action = item.strip().partition("=")
        if target != name:
            continue
        action = action.strip() or KILL
        if action == KILL:
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == OSERROR:
            raise OSError(errno.EIO, f"injected I/O error at {name}")
        elif action == ENOSPC:
            raise OSError(errno.ENOSPC, f"No space left on device (injected at {name})")
        else:
            raise ValueError(f"{ENV}: unknown action {action!r} for {name} (kill, oserror, enospc)")
