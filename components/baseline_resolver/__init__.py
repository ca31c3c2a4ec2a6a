"""Resolves the blessed baseline a new model is compared with."""
