"""Counts in the texts people read: "1 ticket", "2 tickets", never "1 tickets" or "ticket(s)"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun that agrees with it: "1 unit", "0 orders", "3 server errors".

    The plural is the noun with an "s" unless `plural` names it ("1 body", "2 bodies").
    """
    return f"{n} {noun}" if n == 1 else f"{n} {plural if plural is not None else noun + 's'}"
