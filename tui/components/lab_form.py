"""The parts of the Lab made just after the first screen: the function field and the
executors, the parameter fields, and the progress, timeline and summary under them. This module
(and the widgets it loads) is imported only then."""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Input, Label, ProgressBar, Select, SelectionList, Static
from textual.widgets.option_list import OptionDoesNotExist
from textual.widgets.selection_list import Selection

from experiments import options as sweep_options
from experiments.executors import describe as describe_executors
from experiments.options import SweepOption
from storage.text import as_text
from tui.components.lab import MENUS
from tui.components.timeline import Timeline


@dataclass
class PartMade(Message):
    """A part of the Lab is there (by its class name): the Lab fills and checks the form once
    every part is."""

    part: str


class Part:
    """Mixed into each part: says when it is mounted."""

    def on_mount(self) -> None:
        self.post_message(PartMade(type(self).__name__))


def menu_prompt(option: SweepOption) -> str:
    return f"{option.label}: {option.placeholder}"


class TickList(SelectionList):
    """A SelectionList whose boxes read [x] and [ ]: ticked and not differ by more than colour."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segments = list(strip)
        try:
            option = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:
            return strip
        if len(segments) < 4:
            return strip
        box = "[x]" if option.value in self._selected else "[ ]"
        return Strip([Segment(box, segments[1].style), *segments[3:]], strip.cell_length)


class Parameters(Part, VerticalScroll):
    """The sweep's parameters: a field per row of the option table (a menu for an option of a
    few values and for the interpreter), then what is wrong with the form, if anything."""

    def __init__(self) -> None:
        fields, menus = [], []
        for option in sweep_options.OPTIONS:
            if option.choices or option.name in MENUS:
                choices = [(c, c) for c in option.choices]
                menus.append(Select(choices, prompt=menu_prompt(option), id=option.key))
            else:
                field = Input(placeholder=option.placeholder, id=option.key)
                fields.append(Horizontal(Label(option.label), field, classes="param"))
        super().__init__(*fields, *menus, Static("", id="spec-error"), id="lab-params")


class Executors(Part, Vertical):
    """Under the workloads: a field for the user's own function, and the executors to tick."""

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="or your own: MODULE:FUNCTION or path/file.py:FUNCTION", id="function"
        )
        executors = TickList(
            *[
                Selection(
                    as_text(
                        e["name"] + ("" if e["available"] else f"  (unavailable: {e['reason']})")
                    ),
                    e["name"],
                    e["lab_ticked"],
                    disabled=not e["available"],
                )
                for e in describe_executors()
            ],
            id="executors",
        )
        executors.border_title = "executors (space ticks)"
        yield executors


class Results(Part, Vertical):
    """Under the form: the sweep's progress bars, the live timeline and the summary."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="progress-row"):
            yield Label("sweep", classes="bar-label")
            yield ProgressBar(total=1, id="overall", show_eta=False)  # still until a run
            yield Label("run", classes="bar-label")
            yield ProgressBar(total=1, id="current", show_eta=False)
            yield Label("", id="elapsed")
        yield Timeline(id="timeline")
        yield Static("Choose a workload and executors, then press r.", id="summary")
