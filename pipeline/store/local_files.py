"""Local files read without waiting: what a store's key that is no file nor folder is (a named
pipe, a device, a socket), the open that never blocks on one, and the one line refusing it
(h83g, h84a). Its own module, below both :mod:`pipeline.store.location` and
:mod:`pipeline.store.local_zarr` (zarr-python's store that reads as it does), so neither
imports the other's insides."""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from pipeline.errors import StoreError, name_shown

#: The names of Zarr's metadata documents (v3's ``zarr.json``, v2's ``.zarray``, ``.zgroup``,
#: ``.zattrs`` and consolidated ``.zmetadata``), each a file: no key lies below one.
DOCUMENTS = frozenset(("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"))


#: What reading a key that holds no bytes raises: no such key, a directory at the key, or a
#: file where a folder on its path should be. zarr-python's stores (``LocalStore.get``,
#: ``FsspecStore``'s ``allowed_exceptions``) read each of them as a missing key, so a chunk
#: key that is a directory reads as the fill value there; the raw reader reads it alike.
NO_BYTES = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


#: What a path is, by its ``stat`` file type, where it is neither a file nor a folder.
_NOT_FILES = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def not_a_file(mode: int) -> str | None:
    """What a path of ``stat`` mode ``mode`` is, in words, where it is neither a regular file
    nor a folder (a named pipe, a device, a socket); None for a file or a folder."""
    return _NOT_FILES.get(stat.S_IFMT(mode))


class NotAFile(Exception):
    """A local key that is no file nor folder (:func:`open_local_file`); ``kind`` says what
    it is (:func:`not_a_file`). Not an OSError: no reader takes it as a missing key."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path} is {kind}")
        self.path = path
        self.kind = kind


def open_local_file(path: str, buffering: int = -1) -> Any:
    """``open(path, "rb", buffering=buffering)`` for a file a store's key names, which never
    waits: opened without blocking, so a named pipe (FIFO) at the key does not wait for a
    writer that never comes (a run had hung there, without a line, h83g), and raises
    NotAFile where the path (through its links) is no file nor folder: a named pipe, a
    device (a link to ``/dev/zero`` had been read without end), a socket. A folder raises
    IsADirectoryError, as ``open`` does (:data:`NO_BYTES`: read as a missing key)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        kind = not_a_file(mode)
        if kind is not None:
            raise NotAFile(path, kind)
        os.set_blocking(fd, True)
        return open(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def is_not_a_file_refusal(e: BaseException) -> bool:
    """Whether ``e`` is :func:`not_a_file_refusal`'s: a key that is no file nor folder."""
    return isinstance(e, StoreError) and getattr(e, "reason", None) == "not a file"


def not_a_file_refusal(
    store: str, key: str, path: str, kind: str, fix: str | None = None
) -> StoreError:
    """The one line for the key ``key`` of the local store ``store``, at ``path``, that is
    ``kind`` (:func:`not_a_file`) rather than a file: no Zarr writer leaves one, and reading
    it would wait without end (a named pipe) or give bytes that are no chunk's (a device).
    ``fix``: what to do, in words, after removing the key where it is a symbolic link; None:
    an input's (a document restored from a good copy, a chunk's file put there or the key
    removed). StoreError, fields ``store``, ``key``,
    ``kind``, ``reason`` ('not a file')."""
    real = os.path.realpath(path)
    via = "" if real == os.path.normpath(path) else f" (a symbolic link to {real})"
    document = key.rpartition("/")[2] in DOCUMENTS
    if via and fix is not None:  # an output's: its replacement refuses a link (h84e)
        fix = f"remove the link first (a replacing run refuses an output holding one), then {fix}"
    if fix is None:
        fix = (
            "restore the document from a good copy"
            if document
            else "put the chunk's file there, or remove it if the chunk is meant to be the fill "
            "value"
        )
    if kind == _NOT_FILES[stat.S_IFIFO]:
        why = "a read of it waits for a writer without end"
    elif kind == _NOT_FILES[stat.S_IFSOCK]:
        why = "it cannot be read"
    else:
        why = "a read of it gives the device's bytes, not a chunk's"
    return StoreError(
        f"{name_shown(f'{key!r} of {store}')} is {kind}{via}, not a file: Zarr keeps each key "
        f"in a file, and {why}; {fix}",
        store=store,
        key=key,
        kind=kind,
        reason="not a file",
    )


def path_words(path: str) -> str | None:
    """What the local ``path`` is, in words, where it is there and no folder (through its
    links): 'a file', 'a named pipe (FIFO)', 'a socket', a device, and where ``path`` is a
    symbolic link, 'a symbolic link to the file X' (to a file) or 'a symbolic link to X, a
    named pipe (FIFO)' (to anything else); None for a folder, a link to one, or nothing there.
    A ``stat`` alone: nothing is opened. For the lines refusing a store's path that is no
    folder, which had called each of them "a file" (h85a)."""
    try:
        mode = os.stat(path).st_mode
        linked = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return None
    if stat.S_ISDIR(mode):
        return None
    kind = not_a_file(mode) or "a file"
    if not linked:
        return kind
    real = os.path.realpath(path)
    return (
        f"a symbolic link to the file {real}"
        if kind == "a file"
        else f"a symbolic link to {real}, {kind}"
    )
