"""The live per-worker timeline: one lane per worker, a bar per task, as samples arrive; once
a run's threads were looked at (experiments.look), what each thread did instead: on which core,
waiting for one, blocked on a lock, in I/O, asleep (storage.states)."""

from __future__ import annotations

from itertools import groupby

from rich.text import Text
from textual.widget import Widget

from service.present.lanes import PALETTE, lane_label, lane_numbers
from storage.text import as_text


class Timeline(Widget):
    """Task samples ``(pid, thread_id, start_ns, end_ns, ..., core_end)`` drawn on lanes by
    worker, so threads taking turns under the GIL and processes running side by side can be
    seen; each task's cells are the digit of the core it ended on (readable without colour),
    a block where the platform did not say."""

    DEFAULT_CSS = """
    Timeline { height: auto; min-height: 3; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.samples: list[tuple] = []  # (pid, thread, start, end, core or None)
        self.states: tuple = ([], 0)  # a looked-at repeat's lanes and span (us), when shown
        self.caption = "no run yet: press r"
        self.rows = 0  # the lanes it keeps room for: the most it has shown since ``clear``

    def clear(self, caption: str) -> None:
        """No samples, and no room kept for lanes: a new sweep begins."""
        self.rows = 0
        self.set_samples([], caption)

    def reset(self, caption: str) -> None:
        """No samples yet (a new runner process); the room for the lanes stays."""
        self.set_samples([], caption)

    def set_states(self, thread_states: str, caption: str) -> None:
        """Show what each thread did in a looked-at repeat (``run.thread_states``'s text)."""
        from service.present.states import decode

        self.samples = []
        self.states = decode(thread_states)
        self._resize(len(self.states[0]) + 1, caption)

    def set_samples(self, samples, caption: str | None = None) -> None:
        """Replace the samples (a repeat's full list, or none)."""
        self.states = ([], 0)
        # (pid, thread, start, end, the core it ended on): a runner's sample as
        # experiments.runner documents it, the core ninth
        self.samples = [(*s[:4], s[8] if len(s) > 8 else None) for s in samples]
        self._resize(len(self.lanes()), caption)

    def _resize(self, lanes: int, caption: str | None) -> None:
        rows = max(self.rows, lanes)
        # A sweep's timeline grows to the most lanes it has shown and keeps that height, so
        # that a repeat whose tasks all went to fewer workers, or a process just started,
        # redraws it rather than lays the screen out again. The caption in the border title
        # changes no size; shown in place of the lanes (none yet), it is a line of its own.
        layout = rows != self.rows or (not rows and caption not in (None, self.caption))
        self.rows = rows
        if caption is not None:
            self.caption = caption
            self.border_title = as_text(caption)
        self.refresh(layout=layout)

    def lanes(self) -> dict[tuple[int, int], list[tuple[int, int, int]]]:
        """Samples by worker lane, each with its task number, in order of first appearance."""
        lanes: dict[tuple[int, int], list[tuple[int, int, int]]] = {
            worker: [] for worker in lane_numbers((s[0], s[1]) for s in self.samples)
        }
        for n, (pid, thread, start, end, core) in enumerate(self.samples):
            lanes[(pid, thread)].append((n, start, end, core))
        return lanes

    def render(self) -> Text:
        if self.states[0]:
            return self._render_states()
        lanes = self.lanes()
        if not lanes:
            caption = as_text(self.caption, "dim")
            caption.append("\n" * self.rows)  # the room kept for the lanes
            return caption
        start = min(s[2] for s in self.samples)
        end = max(s[3] for s in self.samples)
        span = max(end - start, 1)
        width = max(self.size.width - 14, 10)
        numbers = {worker: n for n, worker in enumerate(lanes)}
        text = Text()
        for worker, tasks in lanes.items():
            label = lane_label(numbers, worker)
            # each cell: a task's colour and glyph (its core's digit), or idle
            cells: list[tuple[str | None, str]] = [(None, " ")] * width
            for n, task_start, task_end, core in tasks:
                first = int((task_start - start) / span * (width - 1))
                last = max(first, int((task_end - start) / span * (width - 1)))
                colour = PALETTE[n % len(PALETTE)]
                cell = (colour, "█") if core is None else (f"reverse {colour}", str(core % 10))
                cells[first : last + 1] = [cell] * (last + 1 - first)
            text.append(f"{label:>12} ")
            # one span per run of a cell: a frame's cost grows with the spans, not the cells
            for (style, glyph), run in groupby(cells):
                text.append(glyph * len(list(run)), style=style)
            text.append("\n")
        text.append("\n" * (self.rows - len(lanes)))
        legend = (
            "digits: the core each task ended on"
            if any(s[4] is not None for s in self.samples)
            else ""
        )
        axis = f"{'':>12} 0 ms {legend:^{max(width - 15, 1)}}{span / 1e6:.1f} ms"
        text.append(axis, style="dim")
        return text

    def _render_states(self) -> Text:
        from service.present.states import LEGEND, LEGEND_SHORT, draw, labels

        lanes, span_us = self.states
        names = labels(lanes)
        pad = max(len(n) for n in names.values())
        width = max(self.size.width, 20)
        cells = max(width - pad - 1, 10)
        text = Text()
        for line in draw(lanes, span_us, cells, label=lambda lane: " " * pad):
            lane = lanes[len(text.plain.splitlines())]
            text.append(f"{names[(lane.pid, lane.tid)]:>{pad}} ")
            for glyph, run in groupby(line[pad + 1 :]):
                text.append(glyph * len(list(run)), style=STATE_STYLES.get(glyph, _CORE_STYLE))
            text.append("\n")
        text.append("\n" * max(self.rows - len(lanes) - 1, 0))
        end = f"{span_us / 1000:.1f} ms"
        text.append(f"{'':>{pad}} 0 ms{end:>{cells - 4}}\n", style="dim")
        text.append(LEGEND if len(LEGEND) <= width else LEGEND_SHORT, style="dim")
        return text


# How each state's character is drawn (a core's digit: _CORE_STYLE).
STATE_STYLES = {"-": "yellow", "=": "red", "~": "cyan", ".": "dim", ":": "magenta", " ": ""}
_CORE_STYLE = "bold green"
