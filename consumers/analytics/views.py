"""The staff-only analytics page: figures and charts from the analytics tables only."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from consumers.analytics.charts import bar_chart
from consumers.analytics.selectors import analytics_figures

DAYS_SHOWN = 31


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@staff_member_required
def figures(request: HttpRequest) -> HttpResponse:
    """Sales per day and product, revenue, orders by status, decline rate, delivery time."""
    data = analytics_figures()
    days = data.sales_by_day[-DAYS_SHOWN:]
    day_chart = bar_chart(
        [(f"{d.day:%d %b}", d.revenue, f"{d.revenue:,.2f}") for d in days],
        title="Sales per day (revenue)",
    )
    product_chart = bar_chart(
        [(p.sku, p.units, str(p.units)) for p in data.sales_by_product[:12]],
        title="Units sold per product",
    )
    status_chart = bar_chart(
        [(s.replace("_", " "), n, str(n)) for s, n in data.by_status.items()],
        title="Orders by status",
        height=180,
    )
    context = {
        "figures": data,
        "decline_rate": None if data.decline_rate is None else f"{data.decline_rate:.1%}",
        "delivery_avg": _duration(data.delivery_avg_seconds),
        "delivery_median": _duration(data.delivery_median_seconds),
        "charts": [day_chart, product_chart, status_chart],
        "days": days,
    }
    return render(request, "analytics/figures.html", context)
