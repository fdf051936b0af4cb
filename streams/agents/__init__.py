"""Thin Faust agents: decode, call a pure detector with its table state, publish what it returns."""
