"""Files and folders private to their owner: ``0600`` files, ``0700`` folders, whatever the umask.

The store holds customers' names, emails, phones and messages, so nothing the product writes may be
readable by other local users. Two layers:

* the CLI runs with :data:`PRIVATE_UMASK` (``os.umask`` at start-up), so every file any library
  creates for it (DuckDB's store, WAL and spill folder, SQLite's files, lock files, exports) is
  born private;
* code that creates a file or folder itself does it with an explicit mode (:func:`private_folder`,
  :func:`open_private`) and tightens what DuckDB created for the Python API (:func:`make_private`),
  where the host application's umask applies and must not be changed.
"""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path

__all__ = ["FILE_MODE", "FOLDER_MODE", "PRIVATE_UMASK", "make_private", "open_private", "private_folder"]

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path | str) -> Path:
    """``mkdir -p`` where every folder created is ``0700``; existing folders are left as they are."""
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            continue  # created meanwhile by another process: theirs to own
        os.chmod(folder, FOLDER_MODE)
    return path


def open_private(path: Path | str, flags: int) -> int:
    """``os.open`` creating ``path`` as ``0600``; a file that exists already is made ``0600`` too."""
    handle = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(handle).st_mode) != FILE_MODE:
            os.fchmod(handle, FILE_MODE)
    except BaseException:
        os.close(handle)
        raise
    return handle


def make_private(*paths: Path | str) -> None:
    """Files become ``0600`` and folders ``0700`` (with the files in them); missing paths are skipped."""
    for path in map(Path, paths):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            _chmod(path, mode, FOLDER_MODE)
            for child in path.iterdir():
                make_private(child)
        elif stat.S_ISREG(mode):
            _chmod(path, mode, FILE_MODE)


def _chmod(path: Path, mode: int, wanted: int) -> None:
    # it may be removed meanwhile (a WAL checkpointed away, a spill file freed)
    if stat.S_IMODE(mode) != wanted:
        with suppress(FileNotFoundError):
            os.chmod(path, wanted)
