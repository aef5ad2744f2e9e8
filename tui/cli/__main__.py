"""``python -m tui.cli``: the CLI, as the console script runs it past the app's options."""

from tui.cli import main

main()
