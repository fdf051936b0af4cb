"""Counts read right: one of a thing is singular, any other number plural, with no "(s)"."""

import pytest

from streams.words import counted


@pytest.mark.parametrize("n, noun, text", [
    (1, "ticket", "1 ticket"),
    (2, "ticket", "2 tickets"),
    (0, "order", "0 orders"),
    (1, "unit", "1 unit"),
    (1, "server error", "1 server error"),
    (20, "email ticket", "20 email tickets"),
    (1, "time", "1 time"),
])
def test_the_noun_agrees_with_the_number(n, noun, text):
    assert counted(n, noun) == text


def test_an_irregular_plural_is_used_for_any_number_but_one():
    assert counted(1, "body", "bodies") == "1 body"
    assert counted(2, "body", "bodies") == "2 bodies"
    assert counted(0, "body", "bodies") == "0 bodies"
