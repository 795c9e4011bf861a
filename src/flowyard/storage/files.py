"""The database file itself: created private (0600), and held by one server at a time.

The file holds signing secrets and key hashes, so a new one is created readable by its owner
only; SQLite gives the ``-wal`` and ``-shm`` files it makes the database file's mode. A server
holds an exclusive ``flock`` on the file for as long as it runs. On Linux and the BSDs
``flock`` locks are separate from the POSIX record locks SQLite takes, so they do not get in
SQLite's way, and other processes (``flowyard keys ...``) still open the file as usual; only a
second server, which asks for the same ``flock``, is refused.
"""

import fcntl
import os

MODE = 0o600


class DatabaseInUse(Exception):
    """Another process holds the database file's server lock."""


def is_file_path(db: str) -> bool:
    """Whether ``db`` names a file on disk (not ``:memory:``, a URI or a server URL)."""
    return bool(db) and db != ":memory:" and not db.startswith("file:") and "://" not in db


def create_private(db: str) -> bool:
    """Create ``db`` empty with mode 0600 unless it exists; whether it was created.

    An existing file is neither opened nor changed: closing a descriptor of a file drops every
    POSIX lock this process holds on it, SQLite's included.
    """
    if not is_file_path(db):
        return False
    try:
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    except FileExistsError:
        return False
    os.close(fd)  # a file that did not exist a moment ago has no SQLite connection on it
    return True


def lock_server(db: str) -> int | None:
    """Create ``db`` if needed and take its server lock; the descriptor that holds it.

    The descriptor must stay open until every SQLite connection of the process is closed (the
    process's exit releases it): closing it earlier would drop SQLite's locks too. None for a
    database that is not a file.

    Raises:
        DatabaseInUse: another server holds the lock.
        OSError: the file cannot be created or opened.
    """
    if not is_file_path(db):
        return None
    fd = os.open(db, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)  # this process has not opened the database: no SQLite lock to lose
        raise DatabaseInUse(db) from None
    except BaseException:
        os.close(fd)
        raise
    return fd
