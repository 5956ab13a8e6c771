"""Write-side services of accounts: registration and API tokens."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import ApiToken


class RegistrationInvalid(Exception):
    """Registration was refused; ``errors`` maps each bad field to a reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in errors.items()))
        self.errors = errors


class InvalidCredentials(Exception):
    """Wrong username or password (deliberately not saying which)."""


def _registration_errors(*, username: str, email: str, password: str) -> dict[str, str]:
    user_model = get_user_model()
    errors: dict[str, str] = {}
    if not username.strip():
        errors["username"] = "Choose a username."
    elif len(username) > 150 or not all(c.isalnum() or c in "@.+-_" for c in username):
        errors["username"] = "Use at most 150 letters, digits and @/./+/-/_ only."
    elif user_model.objects.filter(username__iexact=username).exists():
        errors["username"] = "This username is taken."
    email_max_length = user_model._meta.get_field("email").max_length or 254
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = "Enter a valid e-mail address."
    else:
        # validate_email allows up to 320 characters; the column holds fewer.
        if len(email) > email_max_length:
            errors["email"] = f"Use at most {email_max_length} characters."
    try:
        validate_password(password, user_model(username=username, email=email))
    except ValidationError as exc:
        errors["password"] = " ".join(exc.messages)
    return errors


def user_register(*, username: str, email: str, password: str) -> AbstractBaseUser:
    """Create a customer account; raise :class:`RegistrationInvalid` listing every bad field."""
    username, email = username.strip(), email.strip().lower()
    errors = _registration_errors(username=username, email=email, password=password)
    if errors:
        raise RegistrationInvalid(errors)
    try:
        with transaction.atomic():
            return get_user_model().objects.create_user(
                username=username, email=email, password=password
            )
    except IntegrityError as exc:  # a concurrent registration took the name meanwhile
        raise RegistrationInvalid({"username": "This username is taken."}) from exc


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_issue(*, username: str, password: str) -> tuple[str, ApiToken]:
    """Check the credentials and issue a new bearer token; return ``(token, record)``."""
    user = authenticate(username=username, password=password)
    if user is None or not user.is_active:
        raise InvalidCredentials("Wrong username or password.")
    token = secrets.token_urlsafe(32)
    ttl = timedelta(hours=getattr(settings, "API_TOKEN_TTL_HOURS", 24 * 7))
    record = ApiToken.objects.create(
        customer=user, key_hash=_hash(token), expires_at=timezone.now() + ttl
    )
    return token, record


def api_token_authenticate(*, token: str) -> AbstractBaseUser | None:
    """The active customer a bearer token belongs to, or ``None`` if unknown or expired."""
    if not token:
        return None
    record = (
        ApiToken.objects.select_related("customer")
        .filter(key_hash=_hash(token), expires_at__gt=timezone.now())
        .first()
    )
    if record is None or not record.customer.is_active:
        return None
    ApiToken.objects.filter(pk=record.pk).update(last_used_at=timezone.now())
    return record.customer
