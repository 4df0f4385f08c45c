"""One writer at a time: advisory locks that a killed process releases by itself, on a run
directory or on one output file."""

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


def _locked(path: Path, busy: str) -> int:
    """``path`` opened (created if needed, never through a planted link) and locked with
    ``flock``, holding this process's id and host; a one-line ``BoltzflowError`` if another
    holds it: ``busy`` with ``{holder}`` replaced by what the holder wrote."""
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
            raise BoltzflowError(busy.replace("{holder}", holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


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
    fd = _locked(folder / LOCK_NAME, f"{folder} is in use by {{holder}}; wait for it to finish, or stop it, "
                                     "before writing to this run")
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def file_lock(path: Union[str, Path], what: str = "file") -> Iterator[None]:
    """Hold the lock on writing ``path`` for the block: ``flock`` on ``.NAME.lock`` beside it,
    removed on the way out (a killed holder's lock is released by the operating system).

    A second writer gets a one-line ``BoltzflowError`` naming the file and its holder, e.g. two
    jobs given the same ``--out``: otherwise the later one to finish would silently replace
    the other's file. Folders created to hold the lock are removed again if left empty."""
    path = Path(path)
    created = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    busy = f"the {what} {path} is being written by {{holder}}; wait for it to finish, or write elsewhere"
    while True:
        fd = _locked(lock, busy)
        try:  # still the file at that name, not one its last holder removed while this process opened it
            if os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # before unlocking: whoever opened it now finds it gone and retries
        os.close(fd)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # holds the file written
                break
