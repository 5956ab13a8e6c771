"""``manage.py asyncapi``: write the AsyncAPI 3.0 document (and its HTML page) from the registry."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.asyncapi import build_document, render_json, validate_document
from outbox.asyncapi_html import render_html


class Command(BaseCommand):
    help = (
        "Generate the AsyncAPI 3.0 document of every exchange, queue, binding and event schema "
        "(from the event registry and the consumer services); validate it."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--output", help="write the JSON here (default: standard output)")
        parser.add_argument("--html", help="also write a plain HTML page rendered from it here")
        parser.add_argument(
            "--check",
            action="store_true",
            help="write nothing; fail when --output / --html differ from what would be written",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        document = build_document()
        problems = validate_document(document)
        if problems:
            raise CommandError("the generated document is invalid:\n  " + "\n  ".join(problems))
        outputs = {options["output"]: render_json(document)}
        if options["html"]:
            outputs[options["html"]] = render_html(document)
        if options["check"]:
            stale = [
                path
                for path, text in outputs.items()
                if path and (not Path(path).exists() or Path(path).read_text("utf-8") != text)
            ]
            if stale:
                raise CommandError(
                    f"out of date: {', '.join(stale)} (run `python manage.py asyncapi "
                    "--output docs/asyncapi.json --html docs/asyncapi.html`)"
                )
            self.stdout.write("asyncapi: up to date")
            return
        for path, text in outputs.items():
            if path is None:
                self.stdout.write(text, ending="")
            else:
                Path(path).write_text(text, encoding="utf-8")
                self.stderr.write(f"asyncapi: wrote {path}")
