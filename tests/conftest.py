"""Shared fixtures: a user module on disk, a real database file, and `conlab` run as a real
process whose descendants carry a marker, so tests can prove none of them outlives a run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MARK_VAR = "CONLAB_TEST_MARK"


def _executor_param(name: str):
    """``name`` as a test parameter, skipped (saying why) where this interpreter lacks it."""
    from experiments.executors import EXECUTORS

    reason = EXECUTORS[name].unavailable_reason()
    return pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=str(reason)))


# The executors that run tasks in worker processes: the fault cases (a task raises, a worker is
# killed, a result cannot be pickled, a timeout) are one test each, run on every one of them.
PROCESS_EXECUTORS = [_executor_param(n) for n in ("processes", "pool", "loky", "dask")]
EVERY_EXECUTOR = [
    _executor_param(n)
    for n in (
        "sequential",
        "threads",
        "processes",
        "pool",
        "asyncio",
        "interpreters",
        "loky",
        "dask",
        "joblib",
    )
]

# Names of the lab's own packages that a user's folder may well have too.
LAB_PACKAGE_NAMES = ("experiments", "storage", "tui")


def add_shadowing_packages(directory: Path) -> None:
    """Give ``directory`` packages named like the lab's, which fail loudly if ever imported."""
    for name in LAB_PACKAGE_NAMES:
        (directory / name).mkdir()
        (directory / name / "__init__.py").write_text(
            f"raise ImportError('the user\\'s own {name} package was imported')\n"
        )


USER_MODULE = textwrap.dedent('''
    """Task functions a user might write, good and bad."""
    import json
    import os
    import signal
    import sys
    import time


    def work(size):
        """a small loop"""
        total = 0
        for i in range(size):
            total += i
        return total


    def boom(size):
        raise ValueError(f"boom at size {size}")


    def die(size):
        if size:
            os.kill(os.getpid(), signal.SIGKILL)
        return size


    def hang(size):
        time.sleep(3600)


    def dies_holding_result_lock(size):
        # Fault injection: end this pool worker while it holds the locks of the queues it
        # shares with the parent, as a worker stopped in the middle of sending a result does.
        import gc
        from multiprocessing.queues import SimpleQueue

        for queue in [o for o in gc.get_objects() if isinstance(o, SimpleQueue)]:
            if queue._wlock is not None:
                queue._wlock.acquire(timeout=1)
        os._exit(3)

    def exit3(size):
        if size:
            os._exit(3)
        return size


    def segfault(size):
        if size:
            import ctypes
            ctypes.string_at(0)
        return size


    def unpicklable_result(size):
        import threading
        return threading.Lock()  # no pickler can send a lock, cloudpickle (loky, dask) neither


    def calls_sys_exit(size):
        sys.exit(4)


    def raises_keyboard_interrupt(size):
        raise KeyboardInterrupt


    def warns(size):
        import warnings
        warnings.warn("careful: this task warns", UserWarning)
        return size


    def report_modules(size):
        """writes this worker's imported modules to $MODULES_OUT"""
        path = os.path.join(os.environ["MODULES_OUT"], f"{os.getpid()}.json")
        with open(path, "w") as handle:
            json.dump(sorted(sys.modules), handle)
        return size


    def layout(size):
        """writes the runner's hash seed and environment padding to $LAYOUT_OUT"""
        path = os.path.join(os.environ["LAYOUT_OUT"], f"{os.getpid()}.json")
        with open(path, "w") as handle:
            json.dump([os.environ.get("PYTHONHASHSEED"),
                       len(os.environ.get("CONLAB_LAYOUT_PADDING", ""))], handle)
        return size


    def flat(size):
        """takes the same time whatever its argument"""
        return 0


    def speaks_protocol(size):
        """prints what the runner's events look like, as JSON loggers do"""
        print(json.dumps({"event": "repeat", "index": 99, "warmup": False, "wall_ns": 1,
                          "cpu_ns": 1, "start_ns": 0, "end_ns": 1}))
        print(json.dumps({"event": "tasks", "repeat": 99, "samples": []}))
        print(json.dumps({"event": "done"}), flush=True)
        return size


    def chatty(size):
        for line in range(5000):
            print(f"line {line} of a task that prints a lot " + "." * 60)
        return size


    def speaks_then_hangs(size):
        print(json.dumps({"event": "done"}), flush=True)
        time.sleep(3600)


    async def nap(size):
        import asyncio
        await asyncio.sleep(size / 1000)
        return size


    lam = lambda size: size  # noqa: E731


    def _make():
        def inner(size):
            return size
        return inner


    nested = _make()
''')


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


# A module that starts a process when imported: fine in the parent, fatal in a spawned child.
UNGUARDED_MODULE = textwrap.dedent("""
    import multiprocessing

    def work(size):
        return size

    multiprocessing.Process(target=work, args=(1,)).start()
""")


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "user"
    directory.mkdir()
    (directory / "usermod.py").write_text(USER_MODULE)
    (directory / "unguarded.py").write_text(UNGUARDED_MODULE)
    return directory


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "results.db"


@pytest.fixture(scope="session")
def _one_run_template(tmp_path_factory) -> Path:
    """A database holding one run that a real `conlab run` stored, made once per session."""
    folder = tmp_path_factory.mktemp("one-run")
    template = folder / "results.db"
    proc = subprocess.run(
        [*CLI, "run", "-w", "tiny", "-e", "sequential", "--repeats", "1"],
        cwd=folder,
        env=dict(os.environ, CONLAB_DB=str(template), NO_COLOR="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return template


@pytest.fixture
def db_with_one_run(db_path: Path, _one_run_template: Path) -> Path:
    """``db_path`` holding one stored run (a copy of one real `conlab run`'s database)."""
    source, copy = sqlite3.connect(_one_run_template), sqlite3.connect(db_path)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    return db_path


def _marked_pids(mark: str) -> list[int]:
    """Processes whose environment carries ``mark``: everything a test's `conlab` started."""
    needle = f"{MARK_VAR}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    with open(f"/proc/{entry}/stat", "rb") as stat:
                        if stat.read().split(b") ")[-1][:1] != b"Z":  # zombies hold nothing
                            found.append(int(entry))
        except OSError:
            continue
    return found


def leftover_processes(mark: str, grace_s: float = 3.0) -> list[int]:
    deadline = time.monotonic() + grace_s
    while True:
        pids = _marked_pids(mark)
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


CLI = [sys.executable, "-m", "tui.cli"]


# One process imports the CLI and its libraries once, then forks a child per command, which runs
# the console script's entry point (tui.start:main) in the command's directory and environment,
# with its own stdin (empty), stdout, stderr and exit code, and ends as that script ends
# (SystemExit, so connections close as they would). The server answers the child's pid, then
# its exit code. A child is a real process; only the imports are shared.
FORK_SERVER = textwrap.dedent("""
    import json, os, sys, traceback
    import importlib, pkgutil
    import pandas, tui.cli, tui.start, service, storage
    # every module a command may import on first use: the CLI's, the service's, storage's
    for package in (tui.cli, service, storage):
        for found in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not found.name.endswith(".__main__"):  # that one runs the command
                try:
                    importlib.import_module(found.name)
                except ImportError:
                    pass  # an extra not installed: the command that needs it says so
    # what commands import on first use (no connection, no state): paid once, not per call
    import markdown_it, sqlalchemy.dialects.sqlite
    # What is imported stays out of every child's collections: a child that walked it would
    # copy each page it touches from the server (a third of a second per command at its exit).
    import gc
    gc.collect()
    gc.freeze()
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)  # its own group, as a shell gives a command
            os.chdir(job["cwd"])
            if job.get("env") is not None:
                os.environ.clear()
                os.environ.update(job["env"])
                extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
                sys.path[1:1] = [p for p in extra if p not in sys.path]
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = ["conlab", *job["argv"]]
            try:
                tui.start.main(job["argv"])
            except SystemExit:
                raise  # the child ends as the console script does: a normal interpreter exit
            except BaseException:
                traceback.print_exc()
                raise SystemExit(70)
            raise SystemExit(0)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
""")


class ForkedCli:
    """`conlab ARGS...` run by a fork of one process that imported the CLI once (FORK_SERVER):
    what a user's command does, without paying the imports again for every call."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.server: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, NO_COLOR="1", CONLAB_DB=str(self.scratch / "default-unused.db"))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.scratch,
        )

    def run(
        self, argv, *, cwd: Path | None = None, env: dict | None = None, timeout: float = 120
    ) -> tuple[int, str, str]:
        if self.server is None or self.server.poll() is not None:
            self.server = self._start()
        out, err = self.scratch / "stdout", self.scratch / "stderr"
        job = {"argv": list(argv), "cwd": str(cwd or self.scratch), "env": env}
        job.update(stdout=str(out), stderr=str(err))
        try:
            self.server.stdin.write(json.dumps(job) + "\n")
            self.server.stdin.flush()
            pid = int(self.server.stdout.readline())
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                _kill_group(pid)

            timer = threading.Timer(timeout, expire)
            timer.start()
            try:
                code = int(self.server.stdout.readline())
            finally:
                timer.cancel()
        except BaseException:
            # A call left half-read (pytest-timeout's signal in a readline) would leave its
            # lines for the next call to take as its own: the server goes with it.
            self._discard()
            raise
        if expired.is_set():
            raise subprocess.TimeoutExpired(["conlab", *argv], timeout)
        return code, out.read_text(errors="replace"), err.read_text(errors="replace")

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        return self.run(argv)

    def _discard(self) -> None:
        server, self.server = self.server, None
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.stdin.close()
            self.server.wait(timeout=60)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="session")
def forked_cli(tmp_path_factory):
    forked = ForkedCli(tmp_path_factory.mktemp("forked-cli"))
    yield forked
    forked.close()


@pytest.fixture
def conlab(user_dir: Path, db_path: Path, forked_cli):
    """Run `conlab ARGS...` as a real process, in the user's directory, on the test database.

    Returns a function; each call's processes are marked, and the test fails if any is left.
    A call is a fork of a process that imported the CLI once (``ForkedCli``); ``script=True``
    starts the installed `conlab` script instead, as a user's shell does.
    """
    marks = []

    def call(
        *args: str,
        timeout: float = 120,
        env: dict | None = None,
        check_db=True,
        script=False,
        cwd: Path | None = None,
    ) -> Result:
        # script=True: the installed `conlab` script, as a user runs it (a fork of the server
        # has the user's directory first on its path, as `python -m` would); cwd: where the
        # user stands (the user's directory unless said)
        full_env = {**_marked_env(user_dir, db_path, marks), **(env or {})}
        if not script:
            code, out, err = forked_cli.run(
                args, cwd=cwd or user_dir, env=full_env, timeout=timeout
            )
            return Result(code, out, err)
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("conlab")), *args],
            cwd=cwd or user_dir,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    call.start = lambda *args, **kw: _start(user_dir, db_path, marks, *args, **kw)
    yield call
    for mark in marks:
        assert leftover_processes(mark) == [], "a process started by conlab outlived its run"


def _marked_env(user_dir: Path, db_path: Path, marks: list) -> dict:
    """The environment of one `conlab` call: the test database, the user's modules importable,
    and a fresh mark (remembered in ``marks``) that every process it starts inherits."""
    mark = uuid.uuid4().hex
    marks.append(mark)
    env = dict(os.environ, CONLAB_DB=str(db_path), NO_COLOR="1", **{MARK_VAR: mark})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(user_dir), env.get("PYTHONPATH")]))
    return env


def _start(
    user_dir: Path, db_path: Path, marks: list, *args: str, env: dict | None = None
) -> subprocess.Popen:
    """Start `conlab ARGS...` without waiting (for signal tests)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=user_dir,
        env={**_marked_env(user_dir, db_path, marks), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_args(workload: str, *executors: str, **options) -> list[str]:
    """`conlab run` arguments with --json: ``run_args("tiny", "threads", tasks=2)`` is
    ``run -w tiny -e threads --tasks 2 --processes 1 --json``; ``start_method=`` is
    ``--start-method``, and a list repeats its option (``python=[a, b]``). One runner process
    per run unless ``processes=`` says otherwise: the tests check behaviour, not figures."""
    options.setdefault("processes", 1)
    args = ["run", "-w", workload]
    for executor in executors:
        args += ["-e", executor]
    for name, value in options.items():
        for one in value if isinstance(value, list) else [value]:
            args += ["--" + name.replace("_", "-"), str(one)]
    return [*args, "--json"]


def assert_one_line_error(result: Result) -> None:
    """The bad-input contract: exit 2, one line on stderr, no traceback, nothing on stdout."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("conlab: ")
    assert result.stdout == ""


# --- a real PostgreSQL server, started from the machine's own binaries --------------------------


def _postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: Debian keeps them in /usr/lib/postgresql/N/bin."""
    import glob
    import shutil

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(candidate).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on 127.0.0.1; yields its base SQLAlchemy URL (no database).

    ``$CONLAB_TEST_POSTGRES_URL`` when set (`.ci/run` starts Debian's server and sets it);
    otherwise a throwaway server started here from the machine's own binaries, or a skip that
    says what is missing."""
    given = os.environ.get("CONLAB_TEST_POSTGRES_URL")
    if given:
        yield given.rstrip("/")
        return
    import shutil
    import socket
    import tempfile

    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server here (initdb not found; apt-get install postgresql)")
    data = Path(tempfile.mkdtemp(prefix="conlab-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    pg(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--no-sync",
    )
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(data / "log"),
        "-w",
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: str):
    """A new, empty database on the test server, dropped afterwards."""
    import psycopg

    name = f"conlab_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"{postgres_server}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# Ray on loopback only, without its token authentication (nothing but this machine can reach it):
# for the head the tests start and for every run that talks to it or starts its own.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


# Where `.ci/run`'s build tool keeps the CPython builds it makes (one folder per build), which a
# clone of this repository finds without the tool.
CPYTHON_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "conlab-cpython")

# How to get a free-threaded CPython, for a clone (the first) and beside `.ci/run` (the last).
GET_FREE_THREADED = (
    "`uv python install 3.13t` (or `pyenv install 3.13t`, Debian's python3.13-nogil, or a "
    f"CPython built with ./configure --disable-gil and installed under {CPYTHON_CACHE}/NAME), "
    "or beside .ci/run `../shared/tools/build-cpython 3.13 --disable-gil`"
)


def cached_free_threaded(cache: Path = CPYTHON_CACHE) -> list[str]:
    """The free-threaded interpreters of the builds in ``cache`` (``NAME/bin/python3.Xt``),
    newest version first; what each really is is asked by the caller."""
    import re

    found = cache.glob("*/bin/python3.*t")
    version = lambda path: [int(n) for n in re.findall(r"\d+", path.name)]  # noqa: E731
    return [str(path) for path in sorted(found, key=version, reverse=True) if path.is_file()]


def find_free_threaded(cache: Path = CPYTHON_CACHE) -> str | None:
    """A free-threaded CPython's path: ``$CONLAB_TEST_FREE_THREADED`` when set, else one that
    `conlab list pythons` finds, else a build in ``cache``; None when there is none."""
    from experiments.pythons import discover, probe

    given = os.environ.get("CONLAB_TEST_FREE_THREADED")
    if given:
        found = [probe(given)]
    else:
        found = discover()
        if not any(info["free_threaded"] for info in found):
            found = [probe(path) for path in cached_free_threaded(cache)]
    found = [info for info in found if info and info["free_threaded"]]
    return found[0]["path"] if found else None


@pytest.fixture(scope="session")
def free_threaded_python() -> str:
    """A free-threaded CPython's path (``find_free_threaded``). Missing under ``CI=true``, the
    test fails; elsewhere it is skipped, saying how to get one."""
    path = find_free_threaded()
    if path:
        return path
    given = os.environ.get("CONLAB_TEST_FREE_THREADED")
    missing = (
        f"no free-threaded CPython here (CONLAB_TEST_FREE_THREADED={given!r}, none on PATH, "
        f"none in {CPYTHON_CACHE}); get one with {GET_FREE_THREADED}, or set "
        "CONLAB_TEST_FREE_THREADED to its path"
    )
    _missing_interpreter(missing)


# Where the private interpreters with the PEP 734 backport are kept between runs of the suite.
INTERPRETERS_CACHE = Path(
    os.environ.get("CONLAB_INTERPRETERS_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "conlab-interpreters"
)


def _interpreters_extra() -> list[str]:
    """The requirements of the project's ``interpreters`` extra, as pyproject.toml lists them."""
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    return project["optional-dependencies"]["interpreters"]


def with_backport(base: str) -> str:
    """A private venv of the interpreter ``base`` (no system site-packages) holding the
    project's ``interpreters`` extra, made once and kept in INTERPRETERS_CACHE; its python.
    Several pytest workers may ask at once: one makes it, the others wait on its lock."""
    import fcntl
    import hashlib

    requirements = _interpreters_extra()
    identity = "\n".join([os.path.realpath(base), *requirements])
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    home = INTERPRETERS_CACHE / key
    python = home / "bin" / "python"
    ready = home / "ready"
    INTERPRETERS_CACHE.mkdir(parents=True, exist_ok=True)
    with open(INTERPRETERS_CACHE / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (ready.exists() and _imports(str(python), "interpreters_backport")):
            shutil.rmtree(home, ignore_errors=True)
            subprocess.run([base, "-m", "venv", "--without-pip", str(home)], check=True)
            # this suite's own pip installs into it (a build without ensurepip needs no pip)
            subprocess.run(
                [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
                + ["--disable-pip-version-check", *requirements],
                check=True,
                timeout=600,
            )
            ready.write_text(os.path.realpath(base))
    return str(python)


def _imports(python: str, module: str) -> bool:
    """Whether the interpreter at ``python`` runs and imports ``module``."""
    try:
        found = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60)
    except OSError:
        return False
    return found.returncode == 0


def _missing_interpreter(missing: str) -> None:
    """Fail under ``CI=true`` (CI must run these tests), else skip, saying ``missing``."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(missing)
    pytest.skip(missing)


@pytest.fixture(scope="session")
def interpreters_python() -> str:
    """A CPython that runs the ``interpreters`` executor: ``$CONLAB_TEST_INTERPRETERS``, else a
    3.14+ found here (InterpreterPoolExecutor is its own), else a 3.13 found here with the
    backport installed in a private venv of it (``with_backport``)."""
    from experiments.pythons import discover

    given = os.environ.get("CONLAB_TEST_INTERPRETERS")
    if given:
        return given
    found = [i for i in discover() if i["implementation"] == "CPython" and not i["free_threaded"]]
    for info in found:
        if tuple(info["version_info"][:2]) >= (3, 14):
            return info["path"]
    for info in found:
        if tuple(info["version_info"][:2]) == (3, 13):
            return with_backport(info["executable"])
    _missing_interpreter(
        "no CPython 3.13 or 3.14+ here for the interpreters executor; install one "
        "(e.g. `pyenv install 3.13`) or set CONLAB_TEST_INTERPRETERS to one with "
        "interpreters-pep-734 installed"
    )


@pytest.fixture(scope="session")
def interpreters_free_threaded(free_threaded_python: str) -> str:
    """The free-threaded CPython of ``free_threaded_python``, able to run the ``interpreters``
    executor (its own on 3.14t, else the backport in a private venv of it)."""
    from experiments.pythons import probe

    info = probe(free_threaded_python)
    if info and tuple(info["version_info"][:2]) >= (3, 14):
        return free_threaded_python
    return with_backport(info["executable"] if info else free_threaded_python)


@pytest.fixture(scope="session")
def ray_head():
    """A real local Ray head (`ray start --head --block`) on 127.0.0.1, shared by the tests that
    ask for it; yields its address. Stopped by signalling its own process group (never `ray
    stop`, which would stop every Ray on the machine). Skipped when the ray extra is absent."""
    import signal
    import socket
    import tempfile

    from experiments.executors import EXECUTORS

    reason = EXECUTORS["ray"].unavailable_reason()
    if reason:
        pytest.skip(reason)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = Path(tempfile.mkdtemp(prefix="conlab-ray-")) / "head.log"
    ray = str(Path(sys.executable).with_name("ray"))
    with open(log, "wb") as out:
        head = subprocess.Popen(
            [
                ray,
                "start",
                "--head",
                "--block",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(port),
                "--num-cpus",
                "2",
                "--include-dashboard",
                "false",
                "--disable-usage-stats",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **RAY_ENV},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in log.read_bytes():
            assert head.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "ray start --head did not start in 120 s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        for signum, grace_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(head.pid, signum)
                head.wait(grace_s)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        try:
            os.killpg(head.pid, signal.SIGKILL)  # its gcs_server and raylet, if still there
        except ProcessLookupError:
            pass


def pytest_collection_modifyitems(config, items):
    """The long tests (marked ``slow``) first, the rest in their order: pytest-xdist hands the
    first quarter of the tests out in turn to its workers before the rest, so the long ones are
    spread over the workers and none of them is left running one alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # once, before any xdist worker starts
        # The commands the tests start read compiled modules, as an installed lab's do, not
        # the checkout's sources compiled again by each process (PYTHONDONTWRITEBYTECODE).
        from bench import compile_the_lab

        compile_the_lab()
    config.addinivalue_line(
        "markers", "damaged_databases: the test leaves damaged databases behind on purpose"
    )
    # `make test` runs every test; `pytest -m "not slow"` leaves out the few long end-to-end
    # ones (advise's timed sweeps, Ray, the property test over stored text) while developing.
    config.addinivalue_line(
        "markers", "slow: a long end-to-end test (over ~10 s), left out by -m 'not slow'"
    )
    # The processes the tests start take Ctrl-C as from a user's terminal, also when the suite
    # itself runs as a background job (which a shell starts ignoring SIGINT, and every process
    # it starts inherits that).
    signal.signal(signal.SIGINT, signal.default_int_handler)


def in_mount_namespace(mounts: str, command: str, *, cwd: Path, env: dict) -> Result:
    """Run the shell ``command`` in a private mount namespace after the shell commands
    ``mounts`` (a read-only bind mount, a tiny tmpfs ...), which vanish with it. Skips the test,
    saying why, where this machine cannot (it needs root, or a user namespace, and unshare)."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a private mount namespace")
    as_root = [] if os.geteuid() == 0 else ["-r"]
    probe = subprocess.run(
        ["unshare", "-m", *as_root, "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount in a private namespace here: {probe.stderr.decode().strip()}")
    done = subprocess.run(
        ["unshare", "-m", *as_root, "sh", "-c", f"set -e; {mounts}; set +e; {command}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def _lab_database_files(root: Path) -> list[Path]:
    """Lab databases (by their header) under ``root`` of a version this conlab reads."""
    from storage.database import APPLICATION_ID, SCHEMA_VERSION

    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink() or path.name.endswith(("-wal", "-shm")):
            continue
        try:
            with open(path, "rb") as handle:
                header = handle.read(100)
        except OSError:
            continue
        if (
            header.startswith(b"SQLite format 3\x00")
            and int.from_bytes(header[68:72], "big") == APPLICATION_ID
            and 0 < int.from_bytes(header[60:64], "big") <= SCHEMA_VERSION
        ):
            found.append(path)
    return found


@pytest.fixture(autouse=True)
def _lab_databases_left_behind_pass_db_check(request):
    """`conlab db check` passes on every lab database a test leaves in its tmp_path (a test
    marked ``damaged_databases`` makes broken ones on purpose)."""
    if "tmp_path" not in request.fixturenames or request.node.get_closest_marker(
        "damaged_databases"
    ):
        yield
        return
    tmp_path = request.getfixturevalue("tmp_path")
    yield
    from storage.database import DatabaseError
    from storage.sharing import check

    faults = {}
    for path in _lab_database_files(tmp_path):
        try:
            problems = [str(p) for p in check(path)]
        except DatabaseError as exc:
            problems = [str(exc)]
        if problems:
            faults[str(path.relative_to(tmp_path))] = problems
    assert not faults, f"`conlab db check` fails on databases this test left: {faults}"
