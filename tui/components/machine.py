"""The Machine pane: this machine and interpreter in words and units, and every machine in the
database, this one marked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from storage.text import as_text
from tui.components.pane import ReportsWorkerErrors

THIS = "▶ "  # marks this machine's row in the table


def gib(value: Any) -> str:
    return f"{value / 2**30:.1f} GiB" if isinstance(value, int) else "?"


def facts(env: dict) -> list[tuple[str, str]]:
    """This machine's and interpreter's facts as (label, value in words and units)."""

    def known(key: str) -> str:
        value = env.get(key)
        return "?" if value is None else str(value)

    quota = env.get("cgroup_cpu_quota")
    free = env.get("py_gil_disabled")
    return [
        ("host", known("hostname")),
        ("system", f"{known('os_name')} {known('os_release')} on {known('architecture')}"),
        ("cpu", known("cpu_model")),
        (
            "cores",
            f"{known('usable_cores')} usable of {known('logical_cores')} logical "
            f"({known('physical_cores')} physical)",
        ),
        ("cpu quota", "none" if quota is None else f"{quota} cores"),
        ("memory", gib(env.get("memory_total_bytes"))),
        (
            "python",
            f"{known('python_implementation')} {known('python_version')}"
            + (" free-threaded build" if free else ""),
        ),
        ("gil", "enabled" if env.get("gil_enabled") else "disabled"),
        ("interpreter", known("python_executable")),
        ("fingerprint", known("machine_fingerprint")),
    ]


class MachinePane(ReportsWorkerErrors, Vertical):
    db: reactive[Optional[str]] = reactive(None)
    """The database whose machines are listed (bound to the app's)."""
    db_ready: reactive[bool] = reactive(False)
    """Whether the database has its tables (bound to the app's): then the pane reads it."""

    @dataclass
    class Described(Message):
        """This machine's facts."""

        environment: dict

    @dataclass
    class Loaded(Message):
        """The machines in the database."""

        machines: list[dict]

    described = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.machines: list[dict] = []
        self.fingerprint: Optional[str] = None

    def compose(self) -> ComposeResult:
        yield Static("", id="this-machine")
        table = DataTable(id="machines", cursor_type="row")
        table.add_columns(
            "machine", "fingerprint", "cpu", "cores", "memory", "os", "pythons", "runs"
        )
        yield table

    def on_mount(self) -> None:
        self.query_one(
            "#this-machine"
        ).border_title = (
            f"this machine and interpreter ({THIS.strip()} in the table of machines below)"
        )
        self.describe_this_machine()

    def watch_db_ready(self, ready: bool) -> None:
        if ready:
            self.reload()

    @work(thread=True, exit_on_error=False, group="this-machine")
    def describe_this_machine(self) -> None:
        from service.catalogue import this_machine

        self.post_message(self.Described(this_machine()))

    @on(Described)
    def _described(self, message: Described) -> None:
        self.show_this_machine(message.environment)

    def show_this_machine(self, env: dict) -> None:
        self.described = True
        self.fingerprint = env.get("machine_fingerprint")
        self.query_one("#this-machine", Static).update(
            as_text("\n".join(f"{label:>12}  {value}" for label, value in facts(env)), lines=True)
        )
        self.fill()

    @work(thread=True, exclusive=True, exit_on_error=False, group="machines")
    def reload(self) -> None:
        """Read the machines in the database, off the event loop."""
        from service.catalogue import machines

        self.post_message(self.Loaded(machines(self.db)))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.machines = message.machines
        self.fill()

    def fill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for m in self.machines:
            mark = THIS if self.fingerprint and m["fingerprint"] == self.fingerprint else ""
            system = f"{m['os_name'] or '?'} {m['os_release'] or ''}".strip()
            cells = (
                mark + (m["hostname"] or "?"),
                (m["fingerprint"] or "")[:12],
                m["cpu_model"] or "?",
                m["usable_cores"] or "?",
                gib(m["memory_total_bytes"]),
                system,
                ",".join(m["pythons"]),
                m["runs"],
            )
            table.add_row(*map(as_text, cells))
