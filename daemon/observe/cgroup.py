"""The memory limits systemd put on the daemon's cgroup, so an alert can compare RSS to them.

systemd's ``MemoryHigh=`` and ``MemoryMax=`` (systemd/wa-agentd.service) become the cgroup v2
files ``memory.high`` and ``memory.max`` of the service's cgroup: above ``high`` the kernel
throttles the process and reclaims hard, at ``max`` it OOM-kills it. Reading them here
instead of copying 400M into the alert rules keeps the alert right when an operator changes
the unit (a drop-in, ``systemctl set-property``).

The service's cgroup is the path on the ``0::`` line of ``/proc/self/cgroup`` (cgroup v2),
under ``/sys/fs/cgroup``. A file that is missing (cgroup v1, the root cgroup, a container that
hides it) or says ``max`` (no limit) gives no value: the metric is then absent, and so is the
alert. ``ProtectControlGroups=yes`` makes the tree read-only, not unreadable.
"""

from __future__ import annotations

from pathlib import Path

LIMITS = ("high", "max")


def memory_limits(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> dict[str, int]:
    """``{"high": bytes, "max": bytes}``, each only when the cgroup sets it."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return {}
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:
        return {}
    group = root / path.lstrip("/")
    limits: dict[str, int] = {}
    for name in LIMITS:
        try:
            value = (group / f"memory.{name}").read_text().strip()
        except OSError:
            continue
        if value.isdigit():
            limits[name] = int(value)
    return limits
