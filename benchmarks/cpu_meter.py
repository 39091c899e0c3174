"""CPU and memory readings of the benchmarks' processes, and a private PostgreSQL cluster
for side-by-side runs.

`cpu_seconds` reads each thread's nanosecond run time (a request's few milliseconds of
database CPU show; `stat`'s 10 ms ticks would not); `tree_cpu_seconds` a server's whole
process tree with its reaped children.

The machine's PostgreSQL serves other work too, so its CPU cannot be charged to one
benchmark. The comparison benchmarks (`annotate_load.py --vs-label-studio`,
`import_speed.py`, `export_speed.py`) therefore start their own cluster (initdb into a
folder of /tmp, a port of their own) that both apps use in turn: everything its
postmaster and its backends spend is then the benchmark's, including backends that
connected and exited within the window (a reaped child's CPU is added to its parent's).

Used by those scripts; run them, not this.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
DEFAULT_DATADIR = Path(tempfile.gettempdir()) / "prefhub-bench-pg"


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds each process has run so far, all its threads, from /proc (nanosecond
    run times, where `stat` counts 10 ms ticks); processes that are gone are left out."""
    used = {}
    for pid in pids:
        try:
            threads = os.listdir(f"/proc/{pid}/task")
            used[pid] = (
                sum(
                    int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                    for tid in threads
                )
                / 1e9
            )
        except (FileNotFoundError, ProcessLookupError):
            continue
    return used


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds run between two `cpu_seconds` readings; a process that started in
    between counts from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), in MiB."""
    return psutil.Process(pid).memory_info().rss / 2**20


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants, plus what their exited
    (reaped) children used: the cost of a server whose workers come and go."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants."""
    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class CpuWindow:
    """CPU seconds spent by the server, PostgreSQL and this client over one window."""

    server: float
    postgres: float
    client: float
    wall: float

    def per(self, units: int) -> str:
        """Milliseconds of server + PostgreSQL CPU per unit of work, with the split."""
        if not units:
            return "n/a"
        server, postgres, client = (
            x * 1000 / units for x in (self.server, self.postgres, self.client)
        )
        return (
            f"{server + postgres:.1f} ms (server {server:.1f} + PostgreSQL {postgres:.1f};"
            f" client {client:.1f})"
        )


class CpuMeter:
    """Snapshot CPU of the server tree, the cluster's postmaster tree and this process."""

    def __init__(self, server_pid: int, postmaster_pid: int) -> None:
        self.server_pid = server_pid
        self.postmaster_pid = postmaster_pid
        self._start: tuple[float, float, float, float] | None = None

    def _now(self) -> tuple[float, float, float, float]:
        own = psutil.Process().cpu_times()
        return (
            tree_cpu_seconds(self.server_pid),
            tree_cpu_seconds(self.postmaster_pid),
            own.user + own.system,
            time.perf_counter(),
        )

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> CpuWindow:
        end = self._now()
        server, postgres, client, wall = (b - a for a, b in zip(self._start, end, strict=True))
        return CpuWindow(server=server, postgres=postgres, client=client, wall=wall)


class PrivatePostgres:
    """A PostgreSQL cluster of the benchmarks' own on 127.0.0.1:`port`, user postgres, trust
    auth, in `datadir` (created when missing; kept, stopped, between runs: it holds Label
    Studio's migrated template database). The benchmarks' databases are dropped."""

    def __init__(self, port: int = 5442, datadir: Path = DEFAULT_DATADIR) -> None:
        self.port = port
        self.datadir = datadir
        self.url = f"postgres://postgres@127.0.0.1:{port}"

    def _run(self, *args: str) -> None:
        # PostgreSQL refuses to run as root: as root, run it as the postgres user.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, stdout=subprocess.DEVNULL)

    def start(self) -> PrivatePostgres:
        # A benchmark stopped with SIGTERM then unwinds, so its servers and this cluster stop.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        if not (self.datadir / "PG_VERSION").exists():
            self.datadir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.datadir, "postgres", "postgres")
            self._run(
                str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                "--auth=trust", "--no-sync", "-E", "UTF8",
            )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1"
            " -c max_connections=200 -c shared_buffers=256MB"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-o", options,
            "-l", str(self.datadir / "log"), "-w", "start",
        )  # fmt: skip
        return self

    @property
    def postmaster_pid(self) -> int:
        return int((self.datadir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
