"""Django middleware: every request runs in a span of the W3C trace it came with (or a new one).

Events the request records (``record_event``) carry a child span of it in their ``traceparent``
header, so the trace continues through the relay and the broker to every handler. Add it right
after ``SecurityMiddleware``; see ``outbox.tracing`` for why we do not use OpenTelemetry.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from outbox import tracing

# W3C Trace Context level 2 (draft): the server's span, returned to the caller.
RESPONSE_HEADER = "traceresponse"


class TraceMiddleware:
    """Honour an incoming ``traceparent`` header, else start a new trace, for the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Run the request inside its span; name the span in the response's ``traceresponse``."""
        parent = tracing.parse_traceparent(request.headers.get(tracing.HEADER))
        with tracing.span(parent) as span:
            response = self.get_response(request)
        response[RESPONSE_HEADER] = span.traceparent
        return response
