"""Per-run records of the fine-tuning frontier: one JSON file per finished run, written atomically.

The experiment is a list of units (one training run, or the test evaluation of a chosen run),
each with a stable id such as ``lora_r8__lr0.003__seed0``. A unit's record is written to
``<root>/<id>.json`` through a temporary file and :func:`os.replace` the moment the unit ends, so
an interrupted experiment loses at most the units in flight, and ``--resume`` (or a second worker
process) sees exactly the finished ones. A worker claims a unit before running it by creating
``<root>/<id>.claim`` exclusively (it holds the machine's boot id and the worker's pid); a claim
whose process is gone is stale and is taken over, so a crashed worker never blocks a unit.

Trained weights that a later unit needs (the seed-0 grid runs, until the test split has been
evaluated on the chosen one) go to a separate state directory, by default under the system's
temporary directory; a missing state file only means the run is trained again.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any


def unit_id(method: str, lr: float, seed: int, test: bool = False) -> str:
    """The id of a training unit (``test=True``: the test evaluation of that run).

    Examples
    --------
    >>> unit_id("lora_r8", 0.003, 0), unit_id("full", 3e-05, 0, test=True)
    ('lora_r8__lr0.003__seed0', 'full__lr3e-05__seed0__test')
    """
    return f"{method}__lr{lr:g}__seed{seed}" + ("__test" if test else "")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RecordStore:
    """The folder of unit records and claims (see the module docstring)."""

    def __init__(self, root: Path, state_dir: Path | None = None) -> None:
        self.root = root
        self.state_dir = state_dir or Path(tempfile.gettempdir()) / f"tcur_{root.name}_state"
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def records(self) -> dict[str, dict[str, Any]]:
        """Every finished unit's record by id."""
        out = {}
        for path in sorted(self.root.glob("*.json")):
            out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        return out

    def put(self, uid: str, record: dict[str, Any]) -> None:
        """Store a finished unit's record and drop its claim."""
        write_atomic(self.root / f"{uid}.json", json.dumps(record, indent=1) + "\n")
        (self.root / f"{uid}.claim").unlink(missing_ok=True)

    def claim(self, uid: str) -> bool:
        """Claim ``uid`` for this process; ``False`` if it is finished or a live process has it."""
        if (self.root / f"{uid}.json").exists():
            return False
        path = self.root / f"{uid}.claim"
        if path.exists() and self._holder_alive(path):
            return False
        path.unlink(missing_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps({"boot": boot_id(), "pid": os.getpid()}))
        return True

    def release(self, uid: str) -> None:
        """Drop this process's claim on ``uid`` (after a failure)."""
        (self.root / f"{uid}.claim").unlink(missing_ok=True)

    def claimed(self) -> set[str]:
        """Ids claimed by live processes."""
        return {p.stem for p in self.root.glob("*.claim") if self._holder_alive(p)}

    def state_path(self, uid: str) -> Path:
        """Where the trained weights of unit ``uid`` are kept."""
        return self.state_dir / f"{uid}.safetensors"

    @staticmethod
    def _holder_alive(path: Path) -> bool:
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            return True  # being written right now
        if holder.get("boot") != boot_id():
            return False  # made before this machine (re)started: its process is gone
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return socket.gethostname()
