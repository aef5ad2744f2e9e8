"""Helpers several test files share: runs stored through the real recorder, databases made once
and copied, and what a stored run's environment says."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path


def environment(fingerprint: str, host: str, cpu: str, python: str) -> dict:
    return {
        "machine_fingerprint": fingerprint,
        "interpreter_key": fingerprint[::-1],
        "hostname": host,
        "cpu_model": cpu,
        "os_name": "Linux",
        "os_release": cpu,
        "architecture": python,
        "usable_cores": 2,
        "logical_cores": 2,
        "python_version": python,
        "python_executable": host,
        "python_implementation": "CPython",
    }


def record_run(
    engine, spec, env: dict, walls_ms: list[float], start_method=None, error=None, resolved=None
):
    """One run as the runner reports it, through the real recorder into the real database;
    ``resolved``: options the runner resolved besides these."""
    from storage.recorder import RunRecorder

    resolved = {
        "workers": spec.workers,
        "start_method": start_method,
        "chunksize": None,
        "size": 10,
        **(resolved or {}),
    }
    recorder = RunRecorder(engine, spec, resolved)
    recorder.start()
    recorder.on_event({"event": "env", "environment": env, "runner_pid": 7})
    for index, wall_ms in enumerate(walls_ms):
        wall_ns = int(wall_ms * 1e6)
        recorder.on_event(
            {
                "event": "repeat",
                "index": index,
                "warmup": False,
                "wall_ns": wall_ns,
                "cpu_ns": wall_ns,
                "start_ns": 0,
                "end_ns": wall_ns,
            }
        )
        samples = [[7, 1, 1000, wall_ns // 2], [7, 2, wall_ns // 2, wall_ns - 1000]]
        recorder.on_event({"event": "tasks", "repeat": index, "samples": samples})
    recorder.end_process(error or "")
    recorder.finish("failed" if error else "ok", error, error)


def stored_environment(db_path: Path, run_id: str) -> dict:
    """The environment a run stored in ``db_path`` recorded (its JSON column, read back)."""
    with closing(sqlite3.connect(db_path)) as connection:
        (text,) = connection.execute(
            "SELECT environment_json FROM run WHERE id = ?", (run_id,)
        ).fetchone()
    return json.loads(text)


def copy_database(source: Path, path: Path) -> None:
    """``path`` made a copy of the lab database ``source`` (SQLite's online backup)."""
    with closing(sqlite3.connect(source)) as original, closing(sqlite3.connect(path)) as copy:
        original.backup(copy)


def made_once(build):
    """``build(path)``, which stores a database at ``path``, made once per test process: the
    first call builds a template through it, and every call gets its own copy of the template
    (``build``'s answer is given again, with the template's path read as ``path``). The
    template is made under whatever the first caller has patched: a test that patches what
    ``build`` calls (the recorder, the database layer) builds its own file instead."""
    made: dict = {}

    @functools.wraps(build)
    def copy(path: Path):
        if not made:
            folder = Path(tempfile.mkdtemp(prefix="conlab-template-"))
            atexit.register(shutil.rmtree, folder, True)
            template = folder / "lab.db"
            made["template"], made["answer"] = template, build(template)
        copy_database(made["template"], path)
        return path if made["answer"] == made["template"] else made["answer"]

    return copy


def reading_commands(outs: Path) -> dict[str, str]:
    """The commands that read a lab file, by name (export writes its copy into ``outs``)."""
    return {
        "runs": "runs --json",
        "report": "report --format json",
        "info": "db info --json",
        "check": "db check",
        "export": f"db export {outs}/copy.db",
    }


def read_only_bind(data: Path, mounted: Path) -> str:
    """Shell commands that mount the folder ``data`` at ``mounted`` read-only, and make sure the
    mount refuses writes, even root's."""
    return (
        f"mount --bind {data} {mounted} && mount -o remount,ro,bind {mounted} && "
        f"! touch {mounted}/probe 2>/dev/null"
    )


def commands_in_mount(mounts: str, commands: dict, files: dict, outs: Path, env: dict, after=""):
    """Each of ``commands`` (name: `conlab` arguments) run on its file (name: path under the
    mount) in a private mount namespace after the shell commands ``mounts``, then the shell
    commands ``after``; each one's stdout and stderr in ``outs``/NAME and NAME.err. Returns the
    exit codes and the stderr texts by name, and the shell's result (run in ``env``)."""
    import sys

    from tests.conftest import REPO, in_mount_namespace

    script = "; ".join(
        f"{sys.executable} -m tui.cli {args} --db {files[name]} > {outs}/{name} "
        f"2> {outs}/{name}.err; echo {name}=$?"
        for name, args in commands.items()
    )
    result = in_mount_namespace(
        mounts,
        f"{script}; {after}" if after else script,
        cwd=REPO,
        env=env,
    )
    said = [line for line in result.stdout.split() if line.split("=")[0] in commands]
    codes = dict(line.split("=") for line in said)
    errors = {name: (outs / f"{name}.err").read_text() for name in commands}
    return codes, errors, result


def reads_on_a_read_only_mount(data: Path, mounted: Path, name: str, outs: Path, env: dict):
    """``reading_commands`` on the file ``name`` of the folder ``data``, mounted read-only at
    ``mounted`` (``commands_in_mount``): their exit codes and their stderr texts, by name."""
    commands = reading_commands(outs)
    files = dict.fromkeys(commands, f"{mounted}/{name}")
    codes, errors, result = commands_in_mount(
        read_only_bind(data, mounted), commands, files, outs, env
    )
    assert result.returncode == 0, result.stderr
    return codes, errors
