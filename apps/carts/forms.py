"""Forms of the cart pages. They only parse input; the cart services decide what is allowed."""

from django import forms


class AddToCartForm(forms.Form):
    """``product_id`` and ``quantity`` posted from a product card or page."""

    product_id = forms.IntegerField()
    quantity = forms.IntegerField(initial=1)
    next = forms.CharField(required=False)


class QuantityForm(forms.Form):
    """The new quantity of a cart line (limits are checked by ``cart_set_quantity``)."""

    quantity = forms.IntegerField(error_messages={"invalid": "Enter a whole number."})
