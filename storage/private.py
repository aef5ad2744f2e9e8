"""The lab's own places in the shared temporary directory ($TMPDIR): a folder per user that only
that user can enter, and files in it that only that user can read. Whatever else stands at such
a name (a file, a link, a FIFO, another user's folder) is refused, never used or followed.
Standard library only."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


class NotPrivate(OSError):
    """What stands at one of the lab's names in $TMPDIR is not the lab's to use; the message
    says what it is and the fix."""


def private_folder(name: str) -> Path:
    """``$TMPDIR/NAME-UID``: made mode 0700 when missing, else checked to be a folder (not a
    link) of this user's own, and closed to others if it was not. NotPrivate for anything
    else there; OSError when it cannot be made."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / (name if uid is None else f"{name}-{uid}")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    found = os.lstat(folder)
    if not stat.S_ISDIR(found.st_mode):
        raise NotPrivate(f"{folder} is not a folder; remove it (the lab keeps its files there)")
    if uid is not None and found.st_uid != uid:
        raise NotPrivate(
            f"{folder} belongs to another user (uid {found.st_uid}); remove it, or set "
            "TMPDIR to a folder of your own"
        )
    if found.st_mode & 0o077:
        os.chmod(folder, 0o700)
    return folder


def open_private_file(path: Path, flags: int) -> int:
    """A descriptor on the regular file ``path`` (made mode 0600 when ``flags`` hold O_CREAT),
    never through a link and never blocking on a FIFO; NotPrivate for anything that is not a
    regular file there."""
    extra = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags | extra, 0o600)
    except IsADirectoryError:
        raise NotPrivate(f"{path} is a folder, not a file; remove it") from None
    except OSError as exc:
        if os.path.islink(path):
            raise NotPrivate(f"{path} is a symbolic link, not a file; remove it") from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads, opened to write only
            raise NotPrivate(f"{path} is a FIFO, not a file; remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise NotPrivate(f"{path} is not a regular file (a FIFO or a device); remove it")
    if hasattr(os, "set_blocking"):
        os.set_blocking(descriptor, True)
    return descriptor
