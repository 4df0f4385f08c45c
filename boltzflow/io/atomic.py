"""Write files so that a reader never sees half of one: a temporary file, then a rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

from ..errors import BoltzflowError


def default_mode(directory: bool = False) -> int:
    """The permissions a plain ``open`` or ``mkdir`` would give under the current umask
    (``tempfile`` makes its files 0600 and folders 0700, too private for results on a cluster)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest existing ancestor (a folder to create it in)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: Union[str, Path], what: str = "output file", directory: bool = False) -> Path:
    """Raise a one-line ``BoltzflowError`` unless ``path`` (a file, or with ``directory`` a
    folder to write files into) can be written, before any work starts: a file must not be
    a directory, a folder not a file, and the nearest existing folder must let a file be
    created (tried with a temporary file, removed at once: run as root, permission bits
    alone would not tell). Creates nothing that stays."""
    path = Path(path)
    if not directory and path.is_dir():
        raise BoltzflowError(f"cannot write the {what} {path}: it is a directory; name a file")
    ancestor = nearest_existing(path if directory else path.parent)
    if not ancestor.is_dir():
        raise BoltzflowError(f"cannot write the {what} {path}: {ancestor} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise BoltzflowError(f"cannot write the {what} {path}: no file can be created in {ancestor} "
                             f"({error.strerror})") from None
    return path

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(path: Path) -> None:
    """Remove temporary files or folders of ``path`` (``.NAME.PID.RANDOM.tmp`` beside it) left
    by writers that were killed (their process is gone)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is synced and renamed to ``path``.

    If the block raises (or the process dies), ``path`` keeps its previous content (or stays
    absent) and the temporary file is removed where possible; one left by a killed writer
    is removed by the next write of ``path``. The temporary file is created exclusively
    under an unpredictable name (``.NAME.PID.RANDOM.tmp``), never through a planted link::

        with atomic_path("run/model.pt") as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    os.chmod(tmp, default_mode())
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
