"""The registration form. It only parses; ``user_register`` decides what is acceptable."""

from typing import Any

from django import forms


class RegisterForm(forms.Form):
    """Username, e-mail and the password typed twice."""

    username = forms.CharField(
        max_length=150, widget=forms.TextInput({"autocomplete": "username", "autofocus": True})
    )
    email = forms.EmailField(label="E-mail", widget=forms.EmailInput({"autocomplete": "email"}))
    password = forms.CharField(
        strip=False,
        help_text="At least 8 characters, not too common, not all digits.",
        widget=forms.PasswordInput({"autocomplete": "new-password"}),
    )
    password_confirm = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput({"autocomplete": "new-password"}),
    )
    next = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password, again = cleaned.get("password"), cleaned.get("password_confirm")
        if password and again and password != again:
            self.add_error("password_confirm", "The two passwords differ.")
        return cleaned
