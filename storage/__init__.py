"""What persists and what it means: the result database, its models, and queries over it."""
