"""The run's record in the output store: which blocks are finished, who is writing, and what.

Zarr reads a missing chunk as the fill value, so chunk files prove nothing about completeness.
Each task writes a marker after its chunk bytes are stored; a resumed run skips exactly the
marked blocks. The record lives in ``<array>/.pipeline/`` (Zarr readers ignore it) and is removed
once the run has finished and the output is marked complete in its attributes.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PipelineError
from pipeline.layout import Shape
from pipeline.storage import Location

RECORD = ".pipeline"


@dataclass(frozen=True)
class Ledger:
    """Markers of finished blocks, next to the output array."""

    location: Location
    array_path: str

    def _key(self, *parts: str) -> str:
        base = f"{self.array_path}/{RECORD}" if self.array_path else RECORD
        return "/".join([base, *parts])

    @staticmethod
    def _name(block: Shape) -> str:
        return ".".join(str(i) for i in block)

    def mark(self, block: Shape) -> None:
        """Record that every byte of ``block`` is stored (call after the chunk writes)."""
        self.location.write(self._key("done", self._name(block)), [b""])

    def done(self) -> set[Shape]:
        """Blocks recorded as finished."""
        names = self.location.list(self._key("done"))
        return {tuple(int(i) for i in n.split(".")) for n in names if n and n[0].isdigit()}

    # -- the run's identity, for refusing a resume with another config or input ------------

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.location.write(self._key("run.json"), [json.dumps(manifest, indent=1).encode()])

    def read_manifest(self) -> dict[str, Any] | None:
        raw = self.location.read(self._key("run.json"))
        return None if raw is None else json.loads(raw)

    def exists(self) -> bool:
        return self.location.exists(self._key())

    def clear(self) -> None:
        self.location.delete(self._key(), recursive=True)

    # -- one writer at a time ----------------------------------------------------------------

    def acquire(self) -> None:
        """Take the output's lock, or say who holds it. A lock whose process is gone (same host)
        is stale and taken over, so a run killed with SIGKILL can be resumed."""
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        key = self._key("lock")
        if self.location.create_exclusive(key, json.dumps(me).encode()):
            return
        raw = self.location.read(key)
        holder = json.loads(raw) if raw else {}
        if holder.get("host") == me["host"] and not _alive(holder.get("pid", -1)):
            self.location.write(key, [json.dumps(me).encode()])
            return
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
        raise PipelineError(
            f"another run is writing {self.location.join(self.array_path)} (pid "
            f"{holder.get('pid')} on {holder.get('host')}, since {since}); wait for it, or "
            f"remove {self.location.join(key)} if that run is gone"
        )

    def release(self) -> None:
        self.location.delete(self._key("lock"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
