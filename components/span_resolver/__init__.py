"""Resolver strategies that select artifacts by span (a rolling window, a fixed evaluation set)."""
