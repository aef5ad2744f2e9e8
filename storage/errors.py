"""Errors the storage layer raises for bad user input, importable without pandas."""


class SelectionError(ValueError):
    """A selection the user wrote that cannot be understood; the message names the fix."""
