"""Charge decisions: battery physics surrogate, safety envelope, charge curves."""
