"""The delivery dashboard: who sees it, its periods, its numbers, its warnings."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_cloudmails.admin import charts
from django_cloudmails.models import Delivery, Suppression

pytestmark = pytest.mark.django_db
URL = "admin:cloudmails_dashboard"


def dashboard(client: Client, **params: str) -> str:
    response = client.get(reverse(URL), params)
    assert response.status_code == 200
    return response.content.decode()


def totals(page: str) -> list[int]:
    """The totals row under the chart: created, sent, delivered, bounced, complained,
    opened, clicked."""
    row = re.search(r"<tfoot><tr><th scope=\"row\">Total</th>(.*?)</tr></tfoot>", page)
    assert row
    return [int(value) for value in re.findall(r"<td>(\d+)</td>", row.group(1))]


def body_rows(page: str, heading: str) -> int:
    table = page.split(heading, 1)[1].split("</tbody>", 1)[0]
    return table.count('<tr><th scope="row">')


@pytest.fixture
def traffic(make_delivery: Any) -> None:
    """Four messages today: delivered and opened, delivered and complained, bounced twice."""
    now = timezone.now()
    make_delivery(to_email="a@gmail.com", status="delivered", first_opened_at=now, opens=1)
    make_delivery(to_email="b@yahoo.com", status="delivered", complained_at=now)
    make_delivery(to_email="c@gmail.com", status="bounced", bounce_reason="550 user unknown")
    make_delivery(
        to_email="d@gmail.com", status="bounced", bounce_reason="550 user unknown", alias="bulk"
    )
    Suppression.objects.create(address="c@gmail.com", reason="hard_bounce")


def test_the_dashboard_has_its_admin_url_name() -> None:
    assert reverse(URL) == "/admin/cloudmails/delivery/dashboard/"


def test_the_app_index_links_to_it(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:app_list", args=["cloudmails"])).content.decode()

    assert reverse(URL) in page


def test_staff_who_may_view_deliveries_see_it(staff_client: Any) -> None:
    response = staff_client("cloudmails.view_delivery").get(reverse(URL))

    assert response.status_code == 200


def test_other_staff_do_not(staff_client: Any) -> None:
    assert staff_client("cloudmails.view_suppression").get(reverse(URL)).status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client: Client) -> None:
    response = client.get(reverse(URL))

    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_the_counts_of_the_period(admin_client: Client, traffic: None) -> None:
    page = dashboard(admin_client)

    assert totals(page) == [4, 4, 2, 2, 1, 1, 0]


def test_an_alias_counts_its_own_rows(admin_client: Client, traffic: None) -> None:
    assert totals(dashboard(admin_client, alias="bulk")) == [1, 1, 0, 1, 0, 0, 0]


def test_rows_older_than_the_period_are_left_out(
    admin_client: Client, traffic: None, make_delivery: Any
) -> None:
    old = make_delivery(status="delivered")
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))

    assert totals(dashboard(admin_client, period="7d"))[0] == 4
    assert totals(dashboard(admin_client, period="30d"))[0] == 5


@pytest.mark.parametrize(("period", "buckets"), [("24h", 24), ("7d", 7), ("30d", 30)])
def test_each_period_has_its_buckets(admin_client: Client, period: str, buckets: int) -> None:
    page = dashboard(admin_client, period=period)

    assert body_rows(page, 'cm-deliveries-heading">') == buckets


def test_custom_dates_give_one_bucket_a_day(admin_client: Client) -> None:
    page = dashboard(admin_client, period="custom", start="2026-05-01", end="2026-05-03")

    assert body_rows(page, 'cm-deliveries-heading">') == 3
    assert "2026-05-01 \u2013 2026-05-03" in page


@pytest.mark.parametrize(
    ("start", "end", "error"),
    [
        ("2026-05-03", "2026-05-01", "The first date is after the last one."),
        ("2024-01-01", "2026-05-01", "Choose at most 366 days."),
        ("", "2026-05-01", "Choose both dates of the period."),
    ],
)
def test_bad_dates_are_explained(admin_client: Client, start: str, end: str, error: str) -> None:
    page = dashboard(admin_client, period="custom", start=start, end=end)

    assert error in page
    assert "Last 7 days, in" in page  # the default period is shown meanwhile


def test_the_rates(admin_client: Client, traffic: None) -> None:
    page = dashboard(admin_client)

    for rate, value in [
        ("delivery", "50%"),
        ("bounce", "50%"),
        ("complaint", "50%"),
        ("open", "50%"),
        ("click", "0%"),
    ]:
        assert re.search(
            rf'class="cm-rate-{rate}[^"]*">\s*<th scope="row">[^<]+</th>\s*'
            rf'<td class="cm-rate-value">{value}</td>',
            page,
        ), rate


def test_a_warning_above_the_bounce_and_complaint_levels(
    admin_client: Client, traffic: None
) -> None:
    page = dashboard(admin_client)

    assert 'role="alert"' in page
    assert "Bounce rate 50% is above the 5% warning level" in page
    assert "Complaint rate 50% is above the 0.1% warning level" in page


def test_the_warning_levels_come_from_settings(
    admin_client: Client, traffic: None, settings: Any
) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "BOUNCE_RATE_WARNING": 0.6}

    page = dashboard(admin_client)

    assert "Bounce rate 50% is above" not in page
    assert "Complaint rate 50% is above the 0.1% warning level" in page


def test_no_warning_without_traffic(admin_client: Client) -> None:
    assert 'role="alert"' not in dashboard(admin_client)


def test_top_bounce_reasons_and_domains(admin_client: Client, traffic: None) -> None:
    page = dashboard(admin_client)

    assert "<tr><td>550 user unknown</td><td>2</td>" in page
    assert "<tr><td>gmail.com</td><td>2</td>" in page


def test_the_suppression_count_and_growth(admin_client: Client, traffic: None) -> None:
    page = dashboard(admin_client)

    assert "1 address is suppressed now" in page
    assert "1 was added in this period" in page
    assert "hard bounce: 1" in page


def test_each_chart_is_an_svg_image_with_a_table_of_its_numbers(
    admin_client: Client, traffic: None
) -> None:
    page = dashboard(admin_client)

    assert page.count('<svg class="cm-chart"') == 2
    assert page.count('role="img"') == 2
    assert '<title id="cm-deliveries-t">' in page
    assert 'aria-describedby="cm-deliveries-heading"' in page
    assert 'aria-describedby="cm-suppressions-heading"' in page


def test_the_page_loads_nothing_from_elsewhere(admin_client: Client, traffic: None) -> None:
    page = dashboard(admin_client)

    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_a_bar_names_its_number() -> None:
    svg = charts.column_chart(
        title="T",
        description="D",
        labels=["1 May"],
        values=[{"sent": 12}],
        panels=[charts.Panel("P", [charts.Series("sent", "sent")])],
        chart_id="t",
    )

    assert "<title>1 May: 12 sent</title>" in svg


@pytest.mark.parametrize(
    ("highest", "ceiling"), [(0, 4), (3, 4), (7, 8), (13, 20), (230, 400), (1000, 1000)]
)
def test_the_scale_ends_on_a_round_number(highest: int, ceiling: int) -> None:
    assert charts.nice_ceiling(highest) == ceiling
