"""Web views of accounts: registration (through ``user_register``), and Django's own login and
logout views with a word of feedback."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView, LogoutView
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from apps.accounts.forms import RegisterForm
from apps.accounts.services import RegistrationInvalid, user_register


class ShopLoginView(LoginView):
    """Django's login view; says welcome back."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_valid(form)
        messages.success(self.request, f"Welcome back, {form.get_user().get_username()}!")
        return response


class ShopLogoutView(LogoutView):
    """Django's logout view (POST only); says goodbye."""

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are logged out. See you soon!")
        return response


def _safe_next(request: HttpRequest, target: str) -> str | None:
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and allowed else None


@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    """Create an account, log the new customer in and send them on (to ``next`` or the shop)."""
    if request.method == "GET":
        form = RegisterForm(initial={"next": request.GET.get("next", "")})
        return render(request, "accounts/register.html", {"form": form})
    form = RegisterForm(request.POST)
    if not form.is_valid():
        return render(request, "accounts/register.html", {"form": form}, status=400)
    data = form.cleaned_data
    try:
        user = user_register(
            username=data["username"], email=data["email"], password=data["password"]
        )
    except RegistrationInvalid as exc:
        for field, message in exc.errors.items():
            form.add_error(field if field in form.fields else None, message)
        return render(request, "accounts/register.html", {"form": form}, status=400)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, f"Welcome to ACME Fitness, {user.get_username()}!")
    target = _safe_next(request, data["next"])
    return HttpResponseRedirect(target) if target else redirect("catalog:product_list")
