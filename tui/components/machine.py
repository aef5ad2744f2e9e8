"""The Machine pane: this machine and interpreter, and every machine in the database."""

from __future__ import annotations

from typing import Optional

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from storage.text import as_text

SHOWN = ("hostname", "os_name", "os_release", "architecture", "cpu_model", "logical_cores",
         "physical_cores", "usable_cores", "cgroup_cpu_quota", "memory_total_bytes",
         "python_implementation", "python_version", "python_executable", "py_gil_disabled",
         "gil_enabled", "machine_fingerprint")  # fmt: skip


class MachinePane(Vertical):
    DEFAULT_CSS = """
    MachinePane { padding: 0 1; }
    #this-machine { height: auto; border: round $primary-darken-2; padding: 0 1; }
    #machines { height: 1fr; }
    """

    def __init__(self, db: Optional[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.db = db

    def compose(self) -> ComposeResult:
        yield Static("", id="this-machine")
        table = DataTable(id="machines", cursor_type="row")
        table.add_columns("machine", "fingerprint", "cpu", "cores", "memory", "os", "pythons",
                          "runs")  # fmt: skip
        yield table

    def on_mount(self) -> None:
        self.describe_this_machine()

    @work(thread=True, exit_on_error=False, group="this-machine")
    def describe_this_machine(self) -> None:
        from experiments.environment import collect

        env = collect()
        self.app.call_from_thread(self.show_this_machine, env)

    described = False

    def show_this_machine(self, env: dict) -> None:
        self.described = True
        self.query_one("#this-machine").border_title = "this machine and interpreter"
        self.query_one("#this-machine", Static).update(
            as_text("\n".join(f"{key:>22}  {env.get(key)}" for key in SHOWN), lines=True)
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="machines")
    def reload(self) -> None:
        """Read the machines in the database, off the event loop."""
        from sqlalchemy import text

        from storage.database import open_engine

        engine = open_engine(self.db)
        try:
            with engine.connect() as connection:
                machines = connection.execute(text(
                    "SELECT m.hostname, m.fingerprint, m.cpu_model, m.usable_cores, "
                    "m.memory_total_bytes, m.os_name || ' ' || coalesce(m.os_release, ''), "
                    "(SELECT count(*) FROM run r WHERE r.machine_fingerprint = m.fingerprint) "
                    "FROM machine m ORDER BY m.hostname"
                )).all()  # fmt: skip
                versions = connection.execute(
                    text("SELECT DISTINCT machine_fingerprint, version FROM interpreter")
                ).all()
        finally:
            engine.dispose()
        # Joined here, not with group_concat/string_agg: one query for SQLite and servers alike.
        pythons: dict = {}
        for fingerprint, version in sorted(versions, key=lambda row: str(row[1])):
            pythons.setdefault(fingerprint, []).append(str(version))
        rows = [(*m[:6], ",".join(pythons.get(m[1], [])), m[6]) for m in machines]
        self.app.call_from_thread(self.show_machines, rows)

    def show_machines(self, rows) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for host, fingerprint, cpu, cores, memory, os_name, pythons, runs in rows:
            gib = f"{memory / 2**30:.0f} GiB" if isinstance(memory, int) else "?"
            cells = (host or "?", (fingerprint or "")[:12], cpu or "?", cores or "?", gib,
                     os_name, pythons or "", runs)  # fmt: skip
            table.add_row(*map(as_text, cells))
