"""Web pages of the cart."""

from django.urls import path

from apps.carts import views

app_name = "carts"
urlpatterns = [
    path("", views.cart_detail, name="cart_detail"),
    path("items/", views.cart_add_item, name="add_item"),
    path("items/<int:product_id>/", views.cart_update_item, name="update_item"),
    path("items/<int:product_id>/remove/", views.cart_remove_item, name="remove_item"),
]
