"""``conlab db export --anonymize``: rewrite a private copy of a lab database so that it names
no host, user, home, folder or process of the machines that recorded it (``anonymize_copy``)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from typing import Any

from storage.queries import json_object

# Columns whose values the lab itself makes (keys, statuses, executor names): never rewritten.
_NOT_SCRUBBED = frozenset(
    {
        "id",
        "run_id",
        "sweep_id",
        "key",
        "fingerprint",
        "machine_fingerprint",
        "interpreter_key",
        "status",
        "executor",
        "start_method",
    }
)


_PATH_PART = r"""[^\s/\\"'`<>|:;,()\[\]{}=]+"""


# A folder's name may hold single spaces ("My Clients"); the last part ends at the first space.
_FOLDER = rf"{_PATH_PART}(?: {_PATH_PART})*"


# Every absolute path, not inside a word, number or web URL; each form captures its last part:
# a file:// URL, a UNC path (\\server\share\..., or //server/share/...), a path under a home
# (~/... or ~user/...), a POSIX path, a Windows path with a drive letter (either slash).
_ABSOLUTE_PATH = re.compile(
    rf"(?i:file):(?://[^\s/]*)?/(?:{_FOLDER}/)*({_PATH_PART})"
    rf"|(?<![\w.~/\\:-])\\\\{_PATH_PART}\\(?:{_FOLDER}\\)*({_PATH_PART})"
    rf"|(?<![\w.~/\\:-])//(?!/){_PATH_PART}/(?:{_FOLDER}/)*({_PATH_PART})"
    rf"|(?<![\w.~/\\-])~[\w.-]*/(?:{_FOLDER}/)*({_PATH_PART})"
    rf"|(?<![\w.~/\\-])/(?!/)(?:{_FOLDER}/)*({_PATH_PART})"
    rf"|(?<![\w])[A-Za-z]:[\\/](?:{_FOLDER}[\\/])*({_PATH_PART})"
)


class _Scrubber:
    """Rewrites text in this order: known interpreter paths become ``python``; a known home
    directory standing alone becomes ``~``; every absolute path (inside a home too) is cut to its
    last part; then known host and user names (in any case) become their aliases. Paths are cut
    before names are replaced, so that no folder between a home and a file survives."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self.homes: set[str] = set()
        self.words: dict[str, str] = {}

    def learn(self, env: dict, alias: str) -> None:
        home = env.get("home")
        if isinstance(home, str) and len(home.rstrip("/\\")) > 1:
            self.homes.add(home.rstrip("/\\"))
        executable = env.get("python_executable")
        if isinstance(executable, str) and executable:
            self.paths[executable] = "python"
        for key, replacement in (("hostname", alias), ("user", "user")):
            value = env.get(key)
            if isinstance(value, str) and value:
                self.words[value.casefold()] = replacement

    def __call__(self, value):
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            return value
        for path in sorted(self.paths, key=len, reverse=True):
            value = value.replace(path, self.paths[path])
        for home in sorted(self.homes, key=len, reverse=True):
            # the home itself, not a path inside it (which is cut below, as any other)
            value = re.sub(rf"{re.escape(home)}(?![/\\]?{_PATH_PART})", "~", value)
        value = _ABSOLUTE_PATH.sub(_last_part, value)
        for word in sorted(self.words, key=len, reverse=True):
            pattern = rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])"
            value = re.sub(pattern, self.words[word], value, flags=re.IGNORECASE)
        return value


def _last_part(match: re.Match) -> str:
    last = next(part for part in match.groups() if part is not None)
    backslash = match.group(0).startswith("\\") or (
        match.group(0)[1:2] == ":" and "\\" in match.group(0)
    )
    return f"...\\{last}" if backslash else f".../{last}"


def anonymize_copy(copy: sqlite3.Connection) -> None:
    """Rewrite every text value in every table (keys, statuses and executor names aside): host
    names become machine-<fingerprint>, user names `user`, home directories `~`, interpreter
    paths pythonX.Y, every other absolute path its last part (/srv/lab/jobs.py and
    ~/clients/acme/jobs.py -> .../jobs.py); drop the machine id and the recording host; number
    each run's processes 1, 2, ... in place of their ids, in its rows and its words alike.
    (docs/sharing.md and --help say so.)"""
    scrub = _Scrubber()
    aliases = {
        fingerprint: f"machine-{str(fingerprint)[:8]}"
        for (fingerprint,) in copy.execute("SELECT fingerprint FROM machine")
    }
    for fingerprint, hostname in copy.execute("SELECT fingerprint, hostname FROM machine"):
        scrub.learn({"hostname": hostname}, aliases[fingerprint])
    for (executable,) in copy.execute("SELECT executable FROM interpreter"):
        scrub.learn({"python_executable": executable}, "")
    scrub.learn(_this_process(), "machine")
    runs = copy.execute(
        "SELECT id, environment_json, machine_fingerprint, recorder_host FROM run"
    ).fetchall()
    for _, text, fingerprint, host in runs:
        alias = aliases.get(fingerprint, "machine")
        scrub.learn({"hostname": host}, alias)
        scrub.learn(json_object(text) or {}, alias)
    numbers = _number_processes(copy)
    for run_id, text, fingerprint, _ in runs:
        env = json_object(text)
        if env is not None:
            env.update(hostname=aliases.get(fingerprint, "machine"), user="user", home="~")
            env.pop("machine_id", None)
            _number_environment_processes(env, numbers.setdefault(run_id, {}))
            copy.execute(
                "UPDATE run SET environment_json = ? WHERE id = ?",
                (json.dumps(env, sort_keys=True), run_id),
            )
    _number_processes_in_words(copy, numbers)
    _number_processes_in_looks(copy, numbers)
    copy.execute("UPDATE run SET recorder_host = NULL, recorder_pid = NULL, runner_pid = NULL")
    for fingerprint, alias in aliases.items():
        copy.execute("UPDATE machine SET hostname = ? WHERE fingerprint = ?", (alias, fingerprint))
    for key, _executable, version in copy.execute(
        "SELECT key, executable, version FROM interpreter"
    ).fetchall():
        short = f"python{'.'.join(str(version or '').split('.')[:2])}"
        copy.execute("UPDATE interpreter SET executable = ? WHERE key = ?", (short, key))
    _scrub_every_text(copy, scrub)


def _number_processes(copy: sqlite3.Connection) -> dict[Any, dict[str, int]]:
    """Each run's task samples name their process 1, 2, ... in the order the processes first
    ran a task, in place of its id (lanes and per-worker figures still tell them apart). Returns
    each run's numbering: {run id: {str(pid): number}}."""
    copy.execute(
        "CREATE TEMP TABLE conlab_pid AS SELECT run_id, pid, "
        "row_number() OVER (PARTITION BY run_id ORDER BY min(id)) AS number "
        "FROM task_sample GROUP BY run_id, pid"
    )
    copy.execute("CREATE INDEX temp.conlab_pid_key ON conlab_pid (run_id, pid)")
    copy.execute(
        "UPDATE task_sample SET pid = (SELECT p.number FROM temp.conlab_pid p "
        "WHERE p.run_id IS task_sample.run_id AND p.pid IS task_sample.pid)"
    )
    numbers: dict[Any, dict[str, int]] = {}
    for run_id, pid, number in copy.execute("SELECT run_id, pid, number FROM temp.conlab_pid"):
        numbers.setdefault(run_id, {})[str(pid)] = number
    copy.execute("DROP TABLE temp.conlab_pid")
    return numbers


# "pid 1234" as the lab's messages (a worker that died) and Ray's lines write a process id.
_PID_IN_WORDS = re.compile(r"(?<![\w-])(pid[ =:]?)(\d+)\b", re.IGNORECASE)


def _number_processes_in_words(copy: sqlite3.Connection, numbers: dict) -> None:
    """A process id in a run's error, error detail or output ("worker pid 1234 exited with code
    3") becomes the number its task samples give that process, or the next one."""
    rows = copy.execute(
        "SELECT id, error, error_detail, stderr FROM run "
        "WHERE error LIKE '%pid%' OR error_detail LIKE '%pid%' OR stderr LIKE '%pid%'"
    ).fetchall()
    for run_id, *texts in rows:
        known = numbers.setdefault(run_id, {})

        def number(match: re.Match, known: dict = known) -> str:
            return f"{match.group(1)}{known.setdefault(match.group(2), len(known) + 1)}"

        texts = [_PID_IN_WORDS.sub(number, t) if isinstance(t, str) else t for t in texts]
        copy.execute(
            "UPDATE run SET error = ?, error_detail = ?, stderr = ? WHERE id = ?", (*texts, run_id)
        )


def _number_processes_in_looks(copy: sqlite3.Connection, numbers: dict) -> None:
    """The process and thread ids of what each thread was doing (``run.thread_states``: a lane
    per thread, ``pid tid`` first) and of each repeat's worker split (``repeat.worker_split``:
    ``pid:thread:...`` a worker) become numbers from the run's numbering, one id one number,
    so a process's main thread (tid = pid) stays its process's."""
    for run_id, text in copy.execute(
        "SELECT id, thread_states FROM run WHERE thread_states IS NOT NULL"
    ).fetchall():
        known = numbers.setdefault(run_id, {})
        span, bar, lanes = str(text).partition("|")
        lanes = ";".join(_numbered_fields(lane, " ", 2, known) for lane in lanes.split(";"))
        copy.execute("UPDATE run SET thread_states = ? WHERE id = ?", (span + bar + lanes, run_id))
    for repeat_id, run_id, text in copy.execute(
        "SELECT id, run_id, worker_split FROM repeat WHERE worker_split IS NOT NULL"
    ).fetchall():
        known = numbers.setdefault(run_id, {})
        split = " ".join(_numbered_fields(w, ":", 1, known) for w in str(text).split(" "))
        copy.execute("UPDATE repeat SET worker_split = ? WHERE id = ?", (split, repeat_id))


def _numbered_fields(text: str, separator: str, count: int, numbers: dict[str, int]) -> str:
    """``text`` with its first ``count`` fields (process or thread ids) numbered."""
    fields = text.split(separator)
    for at in range(min(count, len(fields))):
        if fields[at].strip().isdigit():
            fields[at] = str(numbers.setdefault(fields[at].strip(), len(numbers) + 1))
    return separator.join(fields)


def _number_environment_processes(env: dict, numbers: dict[str, int]) -> None:
    """The process ids in a run's environment (its runner processes, the per-worker figures)
    become the numbers its task samples have (``numbers``), or the next ones."""

    def number(pid: Any) -> int:
        return numbers.setdefault(str(pid), len(numbers) + 1)

    for key in ("peak_rss_by_worker", "gil_enabled_by_worker"):
        if isinstance(env.get(key), dict):
            env[key] = {str(number(pid)): value for pid, value in env[key].items()}
    for process in env.get("runner_processes") or ():
        if isinstance(process, dict) and "pid" in process:
            process["pid"] = number(process["pid"])


def _this_process() -> dict[str, str]:
    """The exporting user's own host, user name and home: secrets wherever they appear."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return {"hostname": socket.gethostname(), "user": user, "home": os.path.expanduser("~")}


def _scrub_every_text(copy: sqlite3.Connection, scrub: _Scrubber) -> None:
    copy.create_function("conlab_scrub", 1, scrub, deterministic=True)
    tables = [
        row[0]
        for row in copy.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    for table in tables:
        quoted = identifier(table)
        for (column,) in copy.execute(f"SELECT name FROM pragma_table_info({_literal(table)})"):
            if column in _NOT_SCRUBBED:
                continue
            name = identifier(column)
            copy.execute(
                f"UPDATE {quoted} SET {name} = conlab_scrub({name}) "
                f"WHERE typeof({name}) IN ('text', 'blob')"
            )


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
