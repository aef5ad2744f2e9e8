import pytest
from tests.tui.conftest import two_sweeps, settle
from tui.app import ConlabApp
SIZE=(120,40)

@pytest.mark.parametrize("n", range(30))
async def test_x(tmp_path, monkeypatch, n):
    monkeypatch.chdir(tmp_path)
    victim = tmp_path / "victim.db"
    victim.write_text("precious")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.html").symlink_to(victim)
    db = two_sweeps(tmp_path / "two.db")
    app = ConlabApp(db=str(db))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        from tui.service import report
        found = report([("db", str(db))])
        app.export_report("html")
        notes = [(n.message, n.severity) for n in app._notifications]
        await pilot.pause()
    page = tmp_path / "reports" / "summary.html"
    assert not page.is_symlink(), (notes, found.empty, len(found.processes))
