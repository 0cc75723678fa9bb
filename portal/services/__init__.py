"""Verbs of the domain. Services mutate, flush and audit; they never commit and never
touch the Flask request: the caller (a view, the CLI, a test) owns the transaction."""
