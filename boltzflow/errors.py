"""Errors a user can fix (bad names, files, options): the CLI prints them without a traceback."""

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

EX_TEMPFAIL = 75  # sysexits.h: a temporary failure; the same command, run again, continues


class BoltzflowError(Exception):
    """A mistake in the user's input, with a message that says what is expected; the CLI exits
    with ``exit_code``."""

    exit_code = 2


class StorageError(BoltzflowError):
    """Files could not be written for a reason outside boltzflow (a full disk or quota, a folder
    made read-only): what was written before is kept, and the same command run again once it
    is fixed continues. The CLI exits with 75, as after a stop signal, so that Slurm requeues."""

    exit_code = EX_TEMPFAIL


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


@contextmanager
def storage_errors(where: Union[str, Path], then: str) -> Iterator[None]:
    """Turn an ``OSError`` of ``STORAGE_ERRNOS`` (from Python, torch or h5py) raised in the block
    into a one-line ``StorageError`` naming its file (else ``where``) and what to do ``then``."""
    try:
        yield
    except OSError as error:
        if error.errno not in STORAGE_ERRNOS:
            raise
        raise StorageError(f"cannot write {error.filename or where}: {os.strerror(error.errno)}; {then}") from None


def invalid_setting(key: str, value: object, expected: str) -> BoltzflowError:
    """The error for setting ``key`` (dotted, as in config.toml and ``--set``) holding ``value``."""
    return BoltzflowError(f"setting '{key}' = {value!r}: expected {expected}")
