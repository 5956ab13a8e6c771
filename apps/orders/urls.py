"""Web pages of orders: checkout, "my orders" and an order's page."""

from django.urls import path

from apps.orders import views

app_name = "orders"
urlpatterns = [
    path("", views.order_list, name="order_list"),
    path("checkout/", views.checkout, name="checkout"),
    path("<int:order_id>/", views.order_detail, name="order_detail"),
    path("<int:order_id>/cancel/", views.order_cancel, name="order_cancel"),
]
