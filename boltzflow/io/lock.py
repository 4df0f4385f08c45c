"""One writer per run directory: an advisory lock that a killed process releases by itself."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

from ..errors import BoltzflowError

LOCK_NAME = ".lock"


@contextmanager
def directory_lock(folder: Union[str, Path]) -> Iterator[None]:
    """Hold ``folder``'s lock (``flock`` on ``FOLDER/.lock``, created if needed) for the block.

    A second process asking for it gets a one-line ``BoltzflowError`` naming the holder
    (process id and host, as the holder wrote them), e.g. a requeued Slurm job meeting a
    rerun by hand. The operating system releases the lock when its holder dies, so a killed
    run never leaves its directory locked.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # never truncate a planted link's target
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        raise BoltzflowError(f"{path} is a symbolic link; boltzflow does not follow it: remove it") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise BoltzflowError(f"{folder} is in use by {holder}; wait for it to finish, or stop it, "
                                 "before writing to this run") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
