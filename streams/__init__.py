"""Forewarn: stream processors that catch customer-facing problems before the customer complains."""

__version__ = "0.1.0"
