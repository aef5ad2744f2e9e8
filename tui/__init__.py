"""What a person sees: the typer CLI (and the Textual app)."""
