"""Where a benchmark's CPU goes: CPU seconds per process (Linux /proc), and py-spy samples of Python ones.

Used by bench/production_load.py to name the bottleneck of a run. `ProcessCpu` reads utime + stime of
every process it is given, and of every PostgreSQL and Redis server process on the machine (found by
/proc/<pid>/comm), before and after; `PySpy` records Python processes with py-spy (a dev dependency; it
needs ptrace, which root in a container has) and `top_frames` sums its samples by the function a sample
is in (the innermost of ours) and by the library the CPU was spent in (the innermost frame's package).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = {"postgres": "PostgreSQL", "redis-server": "Redis"}


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (threads included, children not), seconds; 0 if it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5), after "pid (comm)"


def server_pids() -> dict[str, list[int]]:
    """PIDs of the machine's PostgreSQL (every backend) and Redis processes, by SERVERS' names."""
    found: dict[str, list[int]] = {name: [] for name in SERVERS.values()}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                comm = (entry / "comm").read_text().strip()
                if comm in SERVERS:
                    found[SERVERS[comm]].append(int(entry.name))
    return found


@dataclass
class ProcessCpu:
    """CPU seconds used between `start()` and `stop()` by named processes; PostgreSQL's backends come and
    go with connections, so they are listed again at the end and each is counted from when first seen."""

    named: dict[str, list[int]]
    before: dict[int, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.named = {**self.named, **server_pids()}
        self.before = {pid: cpu_seconds(pid) for pids in self.named.values() for pid in pids}

    def stop(self) -> dict[str, float]:
        for name, pids in server_pids().items():
            self.named[name] = sorted(set(self.named.get(name, [])) | set(pids))
        self.used = {
            name: sum(cpu_seconds(pid) - self.before.get(pid, 0.0) for pid in pids)
            for name, pids in self.named.items()
        }
        return self.used


@dataclass
class PySpy:
    """py-spy recording `pids` (raw collapsed stacks, one file each) until `stop()`; a no-op without it."""

    pids: dict[str, int]
    folder: Path
    rate: int = 100
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def executable(self) -> str | None:
        """py-spy beside this interpreter (the venv's bin, not on PATH unless activated), else on PATH."""
        beside = Path(sys.executable).parent / "py-spy"
        return str(beside) if beside.exists() else shutil.which("py-spy")

    def start(self) -> None:
        executable = self.executable
        if executable is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            output = str(self.folder / f"{name}.txt")
            command = [executable, "record", "--format", "raw", "--rate", str(self.rate), "--nonblocking"]
            self.processes[name] = subprocess.Popen(
                [*command, "--output", output, "--pid", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> dict[str, Path]:
        for process in self.processes.values():
            process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for process in self.processes.values():
            process.wait(timeout=60)
        return {name: self.folder / f"{name}.txt" for name in self.processes}


def samples(path: Path) -> Iterator[tuple[list[str], int]]:
    """(frames outermost first, count) of each stack in a py-spy raw file. py-spy samples a thread only
    while it runs (not while it waits in select, a lock or a queue), so every sample is CPU being spent."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if not frame.startswith(("thread (", "process "))]
        if frames:
            yield frames, int(count)


def _library(frame: str) -> str:
    """`name (package/module.py:12)`, as py-spy names a frame relative to its sys.path entry, → the
    top-level package or stdlib module it is in (consultcam, sqlalchemy, PIL, asyncio…)."""
    path = frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    return path.split("/", 1)[0].removesuffix(".py") or "native"


OUTSIDE = "(outside consultcam's code)"


def top_frames(path: Path, count: int = 8) -> dict[str, list[tuple[str, float]]]:
    """Shares of busy samples: `libraries` by where the CPU was spent (innermost frame's package) and
    `consultcam` by the innermost of our functions on the stack (what it calls included), or
    "(outside consultcam's code)" (the server, event loop and driver machinery)."""
    libraries: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for frames, n in samples(path):
        total += n
        libraries[_library(frames[-1])] += n
        ours_on_stack = [f for f in frames if " (consultcam/" in f and " (consultcam/cli.py" not in f]
        ours[ours_on_stack[-1].split(" (")[0] if ours_on_stack else OUTSIDE] += n
    if not total:
        return {"libraries": [], "consultcam": []}
    if set(ours) == {OUTSIDE}:  # not a consultcam process (moto)
        ours.clear()
    return {
        "libraries": [(name, n / total) for name, n in libraries.most_common(count)],
        "consultcam": [(name, n / total) for name, n in ours.most_common(count)],
    }
