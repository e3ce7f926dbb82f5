"""CPU seconds from /proc: a process, the whole machine, the process behind a local port."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far (/proc/<pid>/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / _CLK_TCK
    return None


def machine_cpu_s() -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine since boot (/proc/stat, all CPUs)."""
    with contextlib.suppress(OSError, ValueError):
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = v
        return (
            (user + nice + system + irq + softirq) / _CLK_TCK,
            steal / _CLK_TCK,
            sum(v) / _CLK_TCK,
        )
    return (0.0, 0.0, 0.0)


def listener_pid(address: str) -> dict[str, Any] | None:
    """The local process listening on ``host:port`` (the Kafka broker, Redis), found through
    /proc/net/tcp* and the socket inodes in /proc/<pid>/fd; None if it is not on this machine
    or cannot be seen. Used only to read its CPU time."""
    host, _, port_s = address.rpartition(":")
    if host.strip("[]") not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "") or not port_s:
        return None
    port = int(port_s)
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (d / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        comm = (d / "comm").read_text().strip()
                        return {"pid": int(d.name), "comm": comm, "address": address}
    return None
