"""Zarr's ``LocalStore`` whose reads never wait: each key's file opened as
:meth:`pipeline.store.location.Location.read` opens it
(:func:`~pipeline.store.local_files.open_local_file`). zarr-python's own read had waited without
end on a key that is a named pipe, past Ctrl-C and SIGTERM, its thread blocked in ``open``
(an output's chunk that is one had hung ``verify``, its ``zarr.json`` ``run --resume``:
h84a). A module of its own, imported where a local store is first opened: it imports Zarr,
which the pipeline imports lazily, and its class travels to Dask workers by reference.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Iterable
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.core.buffer.core import default_buffer_prototype
from zarr.storage import LocalStore

from pipeline.store.local_files import (
    NO_BYTES,
    NotAFile,
    not_a_file_refusal,
    open_local_file,
)


def _get(root: str, key: str, prototype: BufferPrototype, byte_range: Any) -> Buffer | None:
    """The bytes of ``key`` under the folder ``root`` (those ``byte_range`` asks for), as
    zarr-python's LocalStore reads them; None where no file is there (no key, a folder).
    Raises :func:`~pipeline.store.local_files.not_a_file_refusal`'s StoreError where the key is
    no file nor folder (a named pipe, a device, a socket), never waiting on it."""
    path = os.path.join(root, key)
    try:
        with open_local_file(path) as f:
            if byte_range is None:
                return prototype.buffer.from_bytes(f.read())
            size = f.seek(0, io.SEEK_END)
            if isinstance(byte_range, RangeByteRequest):
                f.seek(byte_range.start)
                return prototype.buffer.from_bytes(f.read(byte_range.end - f.tell()))
            if isinstance(byte_range, OffsetByteRequest):
                f.seek(byte_range.offset)
            elif isinstance(byte_range, SuffixByteRequest):
                f.seek(max(0, size - byte_range.suffix))
            else:
                raise TypeError(f"Unexpected byte_range, got {byte_range}.")
            return prototype.buffer.from_bytes(f.read())
    except NotAFile as e:
        raise not_a_file_refusal(root, key, path, e.kind) from None
    except NO_BYTES:  # as zarr-python's read: no key there
        return None


class NonBlockingLocalStore(LocalStore):
    """A local folder as a Zarr store (zarr-python's ``LocalStore``), its reads by
    :func:`_get`: never waiting on a key that is a named pipe."""

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """The bytes of ``key`` (:func:`_get`), None where there are none."""
        if prototype is None:
            prototype = default_buffer_prototype()
        if not self._is_open:
            await self._open()
        return await asyncio.to_thread(_get, str(self.root), key, prototype, byte_range)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        """The bytes of each (key, range) of ``key_ranges`` (:func:`_get`)."""
        root = str(self.root)
        return list(
            await asyncio.gather(
                *(asyncio.to_thread(_get, root, k, prototype, r) for k, r in key_ranges)
            )
        )
