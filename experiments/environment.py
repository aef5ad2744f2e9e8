"""What the machine and the interpreter are: one function per source, like pyperf's metadata.

``collect()`` returns a flat dict of plain JSON values; ``machine_fingerprint`` hashes the fields
that identify the hardware and its OS install, so the same box gets the same key in every run.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import sys
import sysconfig
import time
from typing import Any, Optional

from experiments import __version__
from experiments.spec import usable_cores

# The fields that identify a machine, as opposed to one run on it.
MACHINE_FIELDS = (
    "machine_id",
    "os_name",
    "architecture",
    "cpu_model",
    "logical_cores",
    "physical_cores",
    "memory_total_bytes",
)


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def cpu_model() -> Optional[str]:
    text = _read("/proc/cpuinfo")
    if text:
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model"):
                return value.strip()
    return platform.processor() or None


def physical_cores() -> Optional[int]:
    text = _read("/proc/cpuinfo")
    if not text:
        return None
    cores = set()
    physical_id = core_id = None
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical_id = value.strip()
        elif key == "core id":
            core_id = value.strip()
        elif not key and core_id is not None:
            cores.add((physical_id, core_id))
            physical_id = core_id = None
    return len(cores) or None


def affinity_count() -> Optional[int]:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return None


def cgroup_cpu_quota() -> Optional[float]:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 quota/period), None when unlimited."""
    text = _read("/sys/fs/cgroup/cpu.max")
    if text:
        quota, _, period = text.strip().partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota, period = (
        _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
        _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
    )
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def memory_total_bytes() -> Optional[int]:
    text = _read("/proc/meminfo")
    if text:
        for line in text.splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def machine_id() -> Optional[str]:
    """The OS install's id (systemd/dbus), else the host name: stable across runs and reboots."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        text = _read(path)
        if text and text.strip():
            return text.strip()
    return socket.gethostname()


def gil_enabled() -> Optional[bool]:
    check = getattr(sys, "_is_gil_enabled", None)
    return bool(check()) if check is not None else True


def load_average() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_fingerprint(env: dict[str, Any]) -> str:
    """A stable key for the machine: a hash, so it reveals no host or user name."""
    raw = "|".join(str(env.get(name)) for name in MACHINE_FIELDS)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def interpreter_key(env: dict[str, Any]) -> str:
    raw = "|".join(
        str(env.get(name))
        for name in (
            "machine_fingerprint",
            "python_executable",
            "python_version",
            "python_implementation",
            "python_compiler",
            "py_gil_disabled",
        )
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def collect(start_method: Optional[str] = None) -> dict[str, Any]:
    """Everything recorded about where a run happens, as plain JSON values."""
    uname = platform.uname()
    gil_disabled = sysconfig.get_config_var("Py_GIL_DISABLED")
    process_cpu_count = getattr(os, "process_cpu_count", None)
    env: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "user": _user(),
        "home": os.path.expanduser("~"),
        "machine_id": machine_id(),
        "os_name": uname.system,
        "os_release": uname.release,
        "os_version": uname.version,
        "architecture": uname.machine,
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "affinity_cores": affinity_count(),
        "process_cpu_count": process_cpu_count() if process_cpu_count else None,
        "usable_cores": usable_cores(),
        "cgroup_cpu_quota": cgroup_cpu_quota(),
        "memory_total_bytes": memory_total_bytes(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "python_compiler": platform.python_compiler(),
        "python_build": " ".join(platform.python_build()),
        "py_gil_disabled": bool(gil_disabled),
        "gil_enabled": gil_enabled(),
        "start_method": start_method,
        "load_average": load_average(),
        "lab_version": __version__,
        "collected_at": time.time(),
    }
    env["machine_fingerprint"] = machine_fingerprint(env)
    env["interpreter_key"] = interpreter_key(env)
    return env


def _user() -> Optional[str]:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no passwd entry in some containers: not worth failing a run over
        return None
