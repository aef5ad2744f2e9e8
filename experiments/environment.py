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
from experiments.timing import gil_enabled, gil_setting

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


def usable_cores() -> int:
    """The cores this process may use: affinity and, on 3.13+, ``os.process_cpu_count``."""
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def default_worker_counts() -> list[int]:
    """1, 2, 4 ... up to the usable cores (and the core count itself when not a power of two)."""
    cores = usable_cores()
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    counts.append(cores)
    return counts


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


def load_average() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# --- whether the machine is fit to measure (as pyperf's `system show`) ---------------------------

_CPU = "/sys/devices/system/cpu"


def _text(path: str) -> Optional[str]:
    text = _read(path)
    return None if text is None else text.strip()


def cpu_governor() -> Optional[str]:
    """The first CPU's frequency governor (``performance`` keeps the clock steady)."""
    return _text(f"{_CPU}/cpu0/cpufreq/scaling_governor")


def cpu_scaling_driver() -> Optional[str]:
    return _text(f"{_CPU}/cpu0/cpufreq/scaling_driver")


def turbo_enabled() -> Optional[bool]:
    """Whether turbo/boost may raise the clock (Intel's ``no_turbo`` or the generic ``boost``)."""
    no_turbo = _text(f"{_CPU}/intel_pstate/no_turbo")
    if no_turbo in ("0", "1"):
        return no_turbo == "0"
    boost = _text(f"{_CPU}/cpufreq/boost")
    return boost == "1" if boost in ("0", "1") else None


def isolated_cpus() -> Optional[str]:
    """The CPUs kept from the scheduler (``isolcpus=``), "" for none."""
    return _text(f"{_CPU}/isolated")


def nohz_full_cpus() -> Optional[str]:
    """The CPUs without the scheduler tick (``nohz_full=``), "" for none."""
    text = _text(f"{_CPU}/nohz_full")
    return "" if text == "(null)" else text


def aslr() -> Optional[int]:
    """``/proc/sys/kernel/randomize_va_space``: 2 is full randomisation, the kernel's default."""
    text = _text("/proc/sys/kernel/randomize_va_space")
    return int(text) if text and text.isdigit() else None


def swap_used_bytes() -> Optional[int]:
    text = _read("/proc/meminfo")
    if not text:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("SwapTotal", "SwapFree") and value.split():
            fields[key] = int(value.split()[0]) * 1024
    if len(fields) != 2:
        return None
    return fields["SwapTotal"] - fields["SwapFree"]


def thermal_throttle_count() -> Optional[int]:
    """Times the cores were slowed for heat since boot, where the kernel counts them."""
    counts = []
    for entry in sorted(os.listdir(_CPU)) if os.path.isdir(_CPU) else ():
        text = _text(f"{_CPU}/{entry}/thermal_throttle/core_throttle_count")
        if text and text.isdigit():
            counts.append(int(text))
    return sum(counts) if counts else None


# Load per usable core at which a machine is too busy to measure on.
BUSY_LOAD_PER_CORE = 0.5


# The fields that say whether the machine is fit to measure, as `conlab env --check` shows them.
FITNESS_FIELDS = (
    "cpu_governor",
    "cpu_scaling_driver",
    "turbo_enabled",
    "isolated_cpus",
    "nohz_full_cpus",
    "aslr",
    "swap_used_bytes",
    "thermal_throttle_count",
    "load_average",
)


def problems(env: dict[str, Any], with_load: bool = True) -> list[str]:
    """What makes figures taken on this machine move, each with its fix, from ``env``; empty
    when it is fit (a source the platform does not offer is no problem). ``with_load=False``
    leaves out the load, which reports judge at a sweep's start (later runs see its own)."""
    found = []
    governor = env.get("cpu_governor")
    if governor not in (None, "performance"):
        found.append(
            f"CPU frequency governor is {governor!r}, so the clock speed varies; set "
            "it with `sudo cpupower frequency-set -g performance`"
        )
    if env.get("turbo_enabled"):
        found.append(
            "turbo/boost is on, so the clock depends on heat and load; turn it off "
            "(`pyperf system tune`, or write 1 to intel_pstate/no_turbo)"
        )
    if env.get("aslr") not in (None, 2):
        found.append(
            f"ASLR is {env.get('aslr')} (not full randomisation), so results depend on "
            "one memory layout; `echo 2 | sudo tee /proc/sys/kernel/randomize_va_space`"
        )
    if env.get("swap_used_bytes"):
        found.append(
            f"{env['swap_used_bytes'] / 2**20:.0f} MiB of swap in use, so memory may be "
            "paged in mid-run; free memory, then `sudo swapoff -a && sudo swapon -a`"
        )
    load = (env.get("load_average") or [None])[0]
    cores = env.get("usable_cores") or env.get("logical_cores")
    if with_load and load is not None and cores and load / cores >= BUSY_LOAD_PER_CORE:
        found.append(
            f"the machine is busy (load {load / cores:.1f} per core at start), so other "
            "work shares the cores; wait until it is idle or stop that work"
        )
    return found


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
        "gil_setting": gil_setting(),
        "start_method": start_method,
        "load_average": load_average(),
        "cpu_governor": cpu_governor(),
        "cpu_scaling_driver": cpu_scaling_driver(),
        "turbo_enabled": turbo_enabled(),
        "isolated_cpus": isolated_cpus(),
        "nohz_full_cpus": nohz_full_cpus(),
        "aslr": aslr(),
        "swap_used_bytes": swap_used_bytes(),
        "thermal_throttle_count": thermal_throttle_count(),
        "lab_version": __version__,
        "collected_at": time.time(),
    }
    env["machine_fingerprint"] = machine_fingerprint(env)
    env["interpreter_key"] = interpreter_key(env)
    env["problems"] = problems(env, with_load=False)
    return env


def _user() -> Optional[str]:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no passwd entry in some containers: not worth failing a run over
        return None
