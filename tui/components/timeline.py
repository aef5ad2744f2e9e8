"""The live per-worker timeline: one lane per worker, a bar per task, as samples arrive."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from storage.lanes import PALETTE, lane_label, lane_numbers
from storage.text import as_text


class Timeline(Widget):
    """Task samples ``(pid, thread_id, start_ns, end_ns)`` drawn on lanes by worker, so threads
    taking turns under the GIL and processes running side by side can be seen."""

    DEFAULT_CSS = """
    Timeline { height: auto; min-height: 3; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.samples: list[tuple[int, int, int, int]] = []
        self.caption = "no run yet: press r"

    def reset(self, caption: str) -> None:
        self.set_samples([], caption)

    def set_samples(self, samples, caption: str | None = None) -> None:
        """Replace the samples (a repeat's full list, or none)."""
        lanes_before = len(self.lanes())
        self.samples = [tuple(s[:4]) for s in samples]  # (pid, thread, start, end)
        lanes = len(self.lanes())
        # The height changes when lanes come or go, or with the caption shown in their place;
        # the caption in the border title changes no size. Else a repaint, not a layout.
        layout = lanes != lanes_before or (not lanes and caption not in (None, self.caption))
        if caption is not None:
            self.caption = caption
            self.border_title = as_text(caption)
        self.refresh(layout=layout)

    def lanes(self) -> dict[tuple[int, int], list[tuple[int, int, int]]]:
        """Samples by worker lane, each with its task number, in order of first appearance."""
        lanes: dict[tuple[int, int], list[tuple[int, int, int]]] = {
            worker: [] for worker in lane_numbers((s[0], s[1]) for s in self.samples)
        }
        for n, (pid, thread, start, end) in enumerate(self.samples):
            lanes[(pid, thread)].append((n, start, end))
        return lanes

    def render(self) -> Text:
        lanes = self.lanes()
        if not lanes:
            return as_text(self.caption, "dim")
        start = min(s[2] for s in self.samples)
        end = max(s[3] for s in self.samples)
        span = max(end - start, 1)
        width = max(self.size.width - 14, 10)
        numbers = {worker: n for n, worker in enumerate(lanes)}
        text = Text()
        for worker, tasks in lanes.items():
            label = lane_label(numbers, worker)
            cells = [" "] * width
            styles: list[str | None] = [None] * width
            for n, task_start, task_end in tasks:
                first = int((task_start - start) / span * (width - 1))
                last = max(first, int((task_end - start) / span * (width - 1)))
                for column in range(first, last + 1):
                    cells[column] = "█"
                    styles[column] = PALETTE[n % len(PALETTE)]
            text.append(f"{label:>12} ")
            for cell, style in zip(cells, styles):
                text.append(cell, style=style)
            text.append("\n")
        text.append(f"{'':>12} 0 ms{'':>{max(width - 14, 1)}}{span / 1e6:.1f} ms", style="dim")
        return text
