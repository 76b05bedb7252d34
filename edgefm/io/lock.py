"""A run folder locked while a run writes into it.

`lock_folder(folder)` takes an exclusive ``flock`` on ``<folder>/.edgefm.lock`` (holding this
process's id, host and start time); a second run that asks for the same folder gets a
`FolderLockedError` naming the holder. The lock is re-entrant within a process (the Hydra callback
takes it before Hydra writes the folder's ``.hydra/``, the job takes it again) and goes away with
the process, however it ends (the kernel drops ``flock`` locks of a dead process; the small lock file
stays, empty of meaning).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

from edgefm.errors import FolderLockedError

LOCK_NAME = ".edgefm.lock"

# folder (resolved) -> [open file, count] for the locks this process holds
_HELD: dict[Path, list] = {}


def _key(folder: str | os.PathLike) -> Path:
    return Path(folder).resolve()


def acquire(folder: str | os.PathLike, what: str = "run") -> Path:
    """Lock ``folder`` (which must exist) for this process; raise `FolderLockedError` if another
    process holds it. Re-entrant: every `acquire` needs a `release`."""
    key = _key(folder)
    held = _HELD.get(key)
    if held is not None:
        held[1] += 1
        return key
    path = key / LOCK_NAME
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise FolderLockedError(
            f"the {what} folder {key} is in use by another edgefm run ({holder}): wait for it to end, or "
            "choose another folder (hydra.run.dir=DIR; a multirun: hydra.sweep.dir=DIR)") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    _HELD[key] = [f, 1]
    return key


def release(folder: str | os.PathLike) -> None:
    """Undo one `acquire` of ``folder`` (the lock goes when the last is undone)."""
    key = _key(folder)
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        f = _HELD.pop(key)[0]
        with contextlib.suppress(OSError):
            f.seek(0)
            f.truncate()
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()


def release_all() -> None:
    """Drop every lock this process holds (the end of a command run in-process)."""
    for key in list(_HELD):
        _HELD[key][1] = 1
        release(key)


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike, what: str = "run"):
    """``with lock_folder(folder):`` the folder is this process's (see `acquire`)."""
    key = acquire(folder, what)
    try:
        yield key
    finally:
        release(key)


def held(folder: str | os.PathLike) -> bool:
    """Whether this process holds the lock of ``folder``."""
    return _key(folder) in _HELD


__all__ = ["LOCK_NAME", "acquire", "held", "lock_folder", "release", "release_all"]
