"""Splitting a search box's text into the ids it holds."""

import pytest

from outbox.selectors import outbox_search_terms


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("  ORD-1\t", ["ORD-1"]),
        ("ORD-1  ORD-2 ORD-1", ["ORD-1", "ORD-2"]),
        ('"id with spaces" ORD-2', ["id with spaces", "ORD-2"]),
        ("'quoted'", ["quoted"]),
        ('"', ['"']),
        ("   ", []),
    ],
)
def test_search_terms_split_on_whitespace_and_keep_quoted_ids_whole(text, terms):
    assert outbox_search_terms(text) == terms
