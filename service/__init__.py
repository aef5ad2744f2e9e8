"""The application layer: what the faces (tui.cli, the Textual app) do, runnable without a
screen. Each module does one job and returns plain data; none prints or draws, and none imports
textual, typer or click (import-linter keeps it so)."""
