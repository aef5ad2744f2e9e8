"""The help (`?`) lists every key a user can press in the app, found in the running app."""

from __future__ import annotations

from textual.binding import Binding

from tests.tui.conftest import SIZE, settle
from tui.app import PANES, ConlabApp


def declared_by_the_lab(node, binding: Binding) -> bool:
    """Whether ``binding`` (one key of it, as the app dispatches it) comes from a class of the
    lab's own: Textual's widgets bring their usual keys, which are theirs to show."""
    for cls in type(node).__mro__:
        if not cls.__module__.startswith("tui.") or "BINDINGS" not in cls.__dict__:
            continue
        for declared in cls.__dict__["BINDINGS"]:
            declared = declared if isinstance(declared, Binding) else Binding(*declared)
            if declared.action == binding.action and binding.key in declared.key.split(","):
                return True
    return False


async def test_the_help_lists_every_key_a_user_can_press(tmp_path, monkeypatch):
    """Each pane is visited as a user does (its number key), and every key the app then
    answers with an action of its own is in the help, with what it does, on one row."""
    monkeypatch.chdir(tmp_path)
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        pressable: dict[tuple, Binding] = {}
        for number in [name.split()[0] for name in PANES.values()]:
            await pilot.press(number)
            await pilot.pause()
            if app.focused is not None and type(app.focused).__name__ == "Input":
                await pilot.press("escape")  # Compare's A field had the keys: left, as a user does
                await pilot.pause()
            for key, active in app.screen.active_bindings.items():
                if declared_by_the_lab(active.node, active.binding):
                    pressable[(key, active.binding.action)] = active.binding
        assert ("a", "advise") in pressable  # the Lab's advise, found in the running Lab
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        rows = app.screen.text.splitlines()
        missing = [
            f"{app.get_key_display(binding)} ({binding.tooltip or binding.description})"
            for binding in pressable.values()
            if not any(
                f"`{app.get_key_display(binding)}`" in row
                and (binding.tooltip or binding.description) in row
                for row in rows
            )
        ]
        assert missing == [], f"keys the help does not list: {missing}"


async def test_the_labs_footer_shows_advise(tmp_path, monkeypatch):
    """advise, the Lab's headline key, is on the footer while the Lab has the keys, first."""
    from tui.components.footer import KeysFooter

    monkeypatch.chdir(tmp_path)
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert str(app.query_one(KeysFooter).render()).startswith(" a Advise  1 Lab ")
        await pilot.press("2")
        await pilot.pause()
        assert " a Advise " not in str(app.query_one(KeysFooter).render())
