"""The staff-only analytics page."""

import pytest
from django.contrib.auth import get_user_model

from consumers.analytics.tests.test_projection import apply, saga

pytestmark = pytest.mark.django_db(databases=["default", "analytics"])
URL = "/staff/analytics/"


def test_the_page_is_for_staff_only(client, customer):
    assert client.get(URL).status_code == 302
    client.force_login(customer)
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_see_the_figures_and_charts(client):
    apply(*saga(1, delivered_after=5400), *saga(2, declined=True))
    staff = get_user_model().objects.create_user("boss", password="x", is_staff=True)
    client.force_login(staff)
    response = client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("<svg") >= 3 and "<rect" in page
    assert "50.0%" in page  # decline rate: 1 of 2
    assert "90.0 min" in page  # checkout to delivery
    assert "Product MAT" in page


def test_the_admin_index_links_to_it(admin_client):
    assert URL in admin_client.get("/admin/").content.decode()
