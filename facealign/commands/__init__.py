"""Subcommands of the facealign CLI, one module each."""
