"""Fixtures shared by every test package."""

import pytest

from tests.factories import make_customer, make_product


@pytest.fixture
def customer(db):
    """A registered customer."""
    return make_customer()


@pytest.fixture
def other_customer(db):
    """A second customer, to prove one never sees the other's data."""
    return make_customer()


@pytest.fixture
def product(db):
    """A product priced 10.00 with 10 in stock."""
    return make_product()
