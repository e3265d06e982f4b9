"""
Opening a path that must be a regular file, shared by every layer that reads one: a FIFO nobody
writes would hang the open (and the thread), ``/dev/zero`` would never end, a socket or a folder
is not what the caller asked for.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["NotRegularFile", "open_regular"]


class NotRegularFile(OSError):
    """A path that must be a regular file is a FIFO, a device, a socket or a folder."""

    #: What it is instead ("a FIFO", "a character device", "a folder", ...).
    kind: str = "not a regular file"


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def open_regular(path: str | os.PathLike[str]) -> int:
    """
    Open ``path`` for reading, only if it is a regular file (symlinks to one are fine).

    ``O_NONBLOCK`` keeps the open of a FIFO nobody writes from hanging; the kind is checked on the
    open descriptor, so a swap between a check and the open cannot fool it.

    Raises:
        NotRegularFile: For a FIFO, a device (``/dev/zero``), a socket or a folder.
        OSError: When it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            err = NotRegularFile(errno.EINVAL, f"{os.fsdecode(path)} is {kind}, not a regular file")
            err.kind = kind
            raise err
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
