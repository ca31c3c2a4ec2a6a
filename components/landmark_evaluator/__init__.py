"""Evaluator: NME / AUC / failure per subset, CED plot, blessing against a baseline."""
