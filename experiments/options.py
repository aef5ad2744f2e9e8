"""The sweep options: one row each, read by spec validation, ``conlab run``'s flags and the Lab.

A row says what the option is (name, type, default), how a person gives it (help; the flag,
the Lab's label and placeholder where they differ from --NAME, NAME and the default), what values
it takes (bounds or a validator), and which executors take it:
``for_executors=False`` means every executor; otherwise only the executors that list the option in
their ``options``, and the others ignore it (``elsewhere="ignored"``) or refuse it
(``elsewhere="refused"``, with one message for every such option).

To add an option: a row here and the option's name in the ``options`` of the executors that take
it. A dimension (the default) is a column of every run, made from this table (storage.models);
files made before it need a schema version and a step that adds it (storage.migrations,
``option_columns``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from experiments.environment import default_worker_counts

MAX_WORKERS = 1024  # beyond this no machine gains anything; it is a typo
MAX_TASKS = 10_000_000
MAX_PROCESSES = 1000
# Runner processes per run. This VM's speed drifts between processes by ~5% (sd): with 6 a side,
# a 10% change clears Welch's interval most of the time; with 3 it did in under half the pairs.
DEFAULT_PROCESSES = 6
# A run that may take longer than a week is a typo; and threading.Timer cannot wait past
# threading.TIMEOUT_MAX (~292 years on Linux), where it fails in its own thread.
MAX_TIMEOUT_S = 7 * 24 * 3600
START_METHODS = ("fork", "spawn", "forkserver")
# Where an existing Dask cluster can be reached from the runner's process (not inproc://).
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
# Ray: a running head's HOST:PORT (what `ray start --head` prints), or ray://HOST:PORT (Client).
RAY_SCHEMES = ("ray",)
# joblib's backends (--backend, joblib's default first) and asyncio's event loops (--loop).
JOBLIB_BACKENDS = ("loky", "threading", "multiprocessing")
LOOPS = ("asyncio", "uvloop")


class SpecError(ValueError):
    """A spec that cannot run. The message is one line naming the problem and the fix."""


@dataclass(frozen=True)
class SweepOption:
    """One option of a run, as the spec, the command line and the Lab know it."""

    name: str  # the ExperimentSpec field
    type: type  # of one value: int, float or str
    default: Any  # the spec's default; None means "the executor's (or the workload's) default"
    help: str = ""
    flag: str = ""  # on `conlab run`; "": --NAME, with - for _
    label: str = ""  # in the Lab's form; "": NAME, with spaces for _
    placeholder: str = ""  # in the Lab's form, shown while the field is empty; "": the default
    low: Optional[int] = None  # bounds of a whole number, both included
    high: Optional[int] = None
    choices: tuple = ()  # the values it may take, when it is one of a few
    validator: Optional[Callable[[SweepOption, Any], None]] = None  # raises SpecError; else by type
    for_executors: bool = False  # True: only executors that list it in their ``options``
    elsewhere: str = "ignored"  # what other executors do with it: "ignored" or "refused"
    applies_to: str = ""  # the executors that take it, in words, for "applies to ..." messages
    example: str = "2"  # a good value, for messages
    # Whether runs that differ in it are different measurements: a report keeps them apart (its
    # rows, ``--select`` keys, ``--compare``'s differences) and each run stores its value.
    # False only for how long or how often a run is measured, and for labels.
    dimension: bool = True

    def __post_init__(self) -> None:
        derived = {
            "flag": "--" + self.name.replace("_", "-"),
            "label": self.name.replace("_", " "),
            "placeholder": "" if self.default is None else str(self.default),
        }
        for field, value in derived.items():
            if not getattr(self, field):
                object.__setattr__(self, field, value)  # frozen: set once, here

    @property
    def key(self) -> str:
        """The option's Python name on the command line and its field id in the Lab."""
        return self.flag.lstrip("-").replace("-", "_")

    def validate(self, value: Any) -> None:
        """Raise SpecError unless ``value`` is one this option takes (None: its default)."""
        if value is None and self.default is None:
            return
        if self.validator is not None:
            self.validator(self, value)
        elif self.type is int:
            check_int(self.name, value, self.low, self.high, self.flag)
        elif self.type is str:
            check_stored_text(self.name, value, self.flag)

    def from_text(self, text: str) -> Any:
        """A value typed in a form field: None when empty, else the value (SpecError if not one)."""
        text = text.strip()
        if not text:
            return None
        if self.type is int:
            try:
                return int(text)
            except ValueError:
                raise SpecError(
                    f"{self.name} must be a whole number, not {text!r}; "
                    f"pass e.g. {self.flag} {self.example}"
                ) from None
        if self.type is float:
            try:
                return float(text)
            except ValueError:
                raise SpecError(
                    f"{self.key} must be a number, not {text!r}; pass e.g. {self.flag} "
                    f"{self.example}"
                ) from None
        return text


def check_int(name: str, value, low: int, high: int, option: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(
            f"{name} must be a whole number, not {value!r}; pass e.g. {option} {low + 1}"
        )
    if not low <= value <= high:
        raise SpecError(
            f"{name} must be between {low} and {high:,}, not {value:,}; change {option}"
        )


def check_stored_text(name: str, value, option: str) -> None:
    """Text a run stores must be text: a command line can carry bytes that are not UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SpecError(f"{name} {value!r} is not valid UTF-8 text; change {option}") from None


def _check_timeout(option: SweepOption, value) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value <= MAX_TIMEOUT_S
    ):
        raise SpecError(
            f"timeout must be a positive number of seconds up to {MAX_TIMEOUT_S:,} (a week), "
            f"not {value!r}; pass e.g. {option.flag} {option.example}"
        )


def _check_python(option: SweepOption, value) -> None:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(
            "--python needs an interpreter, a path or a name on PATH; pass e.g. "
            "--python python3.12, or leave it out to use this one"
        )


def _check_start_method(option: SweepOption, value) -> None:
    if value not in option.choices:
        raise SpecError(f"unknown start method {value!r}; use one of {', '.join(option.choices)}")
    import multiprocessing

    available = multiprocessing.get_all_start_methods()
    if value not in available:
        raise SpecError(
            f"start method {value!r} is not available on this OS; use one of {', '.join(available)}"
        )


def _check_main(option: SweepOption, value) -> None:
    """An entry script: a Python file that is there (its path as the runner will read it)."""
    import os

    fix = f"pass the program's entry script, e.g. {option.flag} {option.example}"
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{option.flag} needs a file; {fix}")
    check_stored_text(option.name, value, option.flag)
    if not value.endswith(".py"):
        raise SpecError(f"{option.flag} {value!r} is not a Python file (.py); {fix}")
    if not os.path.isfile(value):
        raise SpecError(f"{option.flag} {value!r}: no such file; {fix}")


def _check_choice(option: SweepOption, value) -> None:
    if value not in option.choices:
        raise SpecError(f"unknown {option.name} {value!r}; use one of {', '.join(option.choices)}")


def _check_scheduler(option: SweepOption, address) -> None:
    """A cluster address, ``[SCHEME://]HOST[:PORT]``, as ``distributed`` or Ray reads it; which
    schemes suit which executor is the executor's to say (``unsupported_option``)."""
    from urllib.parse import urlsplit

    fix = f"pass e.g. {option.flag} {option.example}"
    if not isinstance(address, str) or not address.strip():
        raise SpecError(f"{option.flag} needs an address; {fix}")
    scheme, _, rest = address.rpartition("://")
    try:
        parts = urlsplit(f"//{rest}")
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        (scheme and scheme not in SCHEDULER_SCHEMES + RAY_SCHEMES)
        or parts is None
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
        or any(c.isspace() for c in address)
        or (port is None and parts.netloc.endswith(":"))
    ):
        raise SpecError(
            f"{option.flag} {address!r} is not a scheduler address ([SCHEME://]HOST[:PORT], "
            f"SCHEME one of {', '.join(SCHEDULER_SCHEMES + RAY_SCHEMES)}); {fix}"
        )


def parse_workers(text: Optional[str]) -> list[int]:
    """``--workers 1,2,4`` as a list, each count once; empty or None: 1, 2, 4 ... the cores."""
    if text is None or not text.strip():
        return default_worker_counts()
    try:
        return list(dict.fromkeys(int(part) for part in text.split(",")))
    except ValueError:
        raise SpecError(
            f"--workers takes whole numbers separated by commas, not {text!r}; "
            "pass e.g. --workers 1,2,4"
        ) from None


# In the order `conlab run --help` and the Lab show them, and validation checks them. A row gives
# name, type and default, then what differs from the derived flag, label and placeholder.
# fmt: off
OPTIONS: tuple[SweepOption, ...] = (
    SweepOption(
        "workers", int, 1, low=1, high=MAX_WORKERS, for_executors=True, example="1,2,4",
        help="worker counts, e.g. 1,2,4 (default: 1, 2, 4 … up to the usable cores)",
        placeholder=",".join(map(str, default_worker_counts())),
    ),
    SweepOption("tasks", int, 16, low=1, high=MAX_TASKS, help="tasks per repeat"),
    SweepOption(
        "size", int, None, low=0, high=2**40, placeholder="workload's default",
        help="the argument each task gets (several, e.g. 1000,1100, take turns in one sweep), or "
        "auto: the smallest power of two at which one call takes >= 10 ms (default: the "
        "workload's, ~10-50 ms of work; auto for MODULE:FUNCTION)",
    ),
    SweepOption(
        "repeats", int, 5, low=1, high=10_000, dimension=False,
        help="counted repeats in each runner process, or auto: add processes until each run's "
        "95% interval is within --target-ci (or --max-time is spent)",
    ),
    SweepOption(
        "warmups", int, 1, low=0, high=10_000, dimension=False, label="warm-ups",
        help="warm-up repeats in each process, recorded and flagged",
    ),
    SweepOption(
        "processes", int, DEFAULT_PROCESSES, low=1, high=MAX_PROCESSES, dimension=False,
        help="runner processes per run, each with its own memory layout and hash seed",
    ),
    SweepOption(
        "start_method", str, None, choices=START_METHODS, validator=_check_start_method,
        for_executors=True, applies_to="process executors", example="spawn",
        help="for process executors", placeholder="executor's default",
    ),
    SweepOption(
        "chunksize", int, None, low=1, high=MAX_TASKS, for_executors=True,
        applies_to="process executors", help="for process executors",
        placeholder="executor's default",
    ),
    SweepOption(
        "max_tasks_per_child", int, None, low=1, high=MAX_TASKS, for_executors=True,
        elsewhere="refused", applies_to="process pools", label="tasks/child",
        help="process pools: replace each worker after N tasks", placeholder="never replaced",
    ),
    SweepOption(
        "main", str, None, validator=_check_main, for_executors=True,
        applies_to="process executors", example="app.py", label="main script",
        help="process executors: the program's entry script, which spawn and forkserver workers "
        "import first (as __mp_main__), as Python's own do (default: the function's module)",
        placeholder="the function's module",
    ),
    SweepOption(
        "scheduler", str, None, validator=_check_scheduler, for_executors=True,
        elsewhere="refused", applies_to="dask and ray", example="tcp://host:8786",
        label="cluster at", placeholder="dask, ray: a local one",
        help="dask, ray: address of an existing cluster (default: a LocalCluster of --workers, "
        "a local Ray of --workers CPUs)",
    ),
    SweepOption(
        "backend", str, None, choices=JOBLIB_BACKENDS, validator=_check_choice,
        for_executors=True, elsewhere="refused", applies_to="joblib", example="threading",
        label="joblib on", placeholder="loky",
        help="joblib: loky, threading or multiprocessing (default loky, joblib's own)",
    ),
    SweepOption(
        "loop", str, None, choices=LOOPS, validator=_check_choice, for_executors=True,
        elsewhere="refused", applies_to="asyncio", example="uvloop", label="event loop",
        help="asyncio: the event loop, asyncio's own or uvloop (default asyncio)",
        placeholder="asyncio",
    ),
    SweepOption(
        "python", str, None, validator=_check_python, example="python3.12",
        help="interpreter to run under (repeatable)", placeholder="this interpreter",
    ),
    SweepOption(
        "timeout_s", float, None, flag="--timeout", validator=_check_timeout, example="60",
        dimension=False, placeholder="none",
        help="seconds before a runner process is stopped and its run failed",
    ),
    SweepOption(
        "tag", str, None, example="baseline", dimension=False, placeholder="none",
        help="a label to select these runs by later",
    ),
)
# fmt: on

BY_NAME = {option.name: option for option in OPTIONS}


def with_option_fields(cls):
    """Give a class (before ``@dataclass``) one field per option, with the option's default,
    after its own fields that have no default."""
    own = dict(cls.__dict__.get("__annotations__", {}))
    required = {name: kind for name, kind in own.items() if name not in cls.__dict__}
    for option in OPTIONS:
        kind = option.type.__name__
        required[option.name] = kind if option.default is not None else f"Optional[{kind}]"
        setattr(cls, option.name, option.default)
    cls.__annotations__ = {**required, **{n: k for n, k in own.items() if n not in required}}
    return cls


def takers(option: SweepOption, executors) -> list[str]:
    """The names of the executors (objects with ``name`` and ``options``) that take ``option``."""
    return [e.name for e in executors if not option.for_executors or option.name in e.options]


def _refused_elsewhere(executor, values: dict):
    """The refused-elsewhere options set in ``values`` that ``executor`` (None: unknown) lacks."""
    for option in OPTIONS:
        if values.get(option.name) is None or option.elsewhere != "refused":
            continue
        if option.for_executors and option.name not in getattr(executor, "options", ()):
            yield option


def not_taken(executor, values: dict) -> Optional[str]:
    """None when ``executor`` takes every refused-elsewhere option set in ``values``; else the
    one-line refusal, naming the executors that do take it."""
    from experiments.executors import EXECUTORS

    for option in _refused_elsewhere(executor, values):
        choose = " or ".join(f"-e {name}" for name in takers(option, EXECUTORS.values()))
        return (
            f"{option.flag} applies to {option.applies_to}, not {executor.name}; "
            f"drop it or choose {choose}"
        )
    return None


def not_taken_by_any(executors, values: dict) -> Optional[str]:
    """None unless a refused-elsewhere option set in ``values`` is taken by none of a sweep's
    ``executors`` (objects, None for an unknown name); else the one-line refusal."""
    from experiments.executors import EXECUTORS

    for option in OPTIONS:
        if values.get(option.name) is not None and all(
            option in _refused_elsewhere(e, values) for e in executors
        ):
            add = " or ".join(f"-e {name}" for name in takers(option, EXECUTORS.values()))
            return f"{option.flag} applies to {option.applies_to}; add {add} or drop {option.flag}"
    return None


def without_refused(executor, values: dict) -> dict:
    """``values`` less the options ``executor`` refuses: in a sweep, an option goes to the
    executors that take it."""
    refused = {option.name for option in _refused_elsewhere(executor, values)}
    return {name: value for name, value in values.items() if name not in refused}
