"""``manage.py resign_outbox --key-id OLD``: sign stored outbox rows again with the current key.

After a key rotation, rows signed with the old key stay replayable only while consumers list that
key; re-signed rows verify with the new one (see ``outbox.resigning`` and docs/security.md).
"""

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.resigning import Resigned, outbox_resign
from outbox.signing import SigningConfigError

# With the default verbosity, a progress line at most this often (seconds); -v 2: every batch.
PROGRESS_INTERVAL = 5.0


class Command(BaseCommand):
    help = (
        "Sign outbox rows signed with --key-id again, with the key their source signs with now "
        "(the first of its keys in OUTBOX_SIGNING_KEYS), so they stay replayable once the old "
        "key is removed. Checks each row's signature with the old key first (which must still "
        "be listed here) and leaves a row that does not verify as it is. Every state, pending "
        "rows too. Reads the whole table in batches of short transactions; safe to interrupt "
        "and to run again."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--key-id", required=True, help="The key id the rows were signed with (the old key)."
        )
        parser.add_argument(
            "--source", help="Refuse unless the old key belongs to this source (a guard)."
        )
        parser.add_argument("--batch-size", type=int, default=1000, help="Rows read per batch.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Check and count; change nothing."
        )
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        self._every_batch = options["verbosity"] >= 2
        self._quiet = options["verbosity"] == 0
        self._last_progress = time.monotonic()
        try:
            result = outbox_resign(
                key_id=options["key_id"],
                source=options["source"],
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                using=options["database"],
                progress=self._progress,
            )
        except SigningConfigError as exc:
            raise CommandError(f"resign_outbox: {exc}") from exc
        self.stdout.write(summary(result))
        if result.refused:
            examples = "\n  ".join(result.refused_examples)
            more = result.refused - len(result.refused_examples)
            raise CommandError(
                f"resign_outbox: {result.refused} rows do not verify with {result.old_key!r} and "
                f"were left as they are (altered since they were signed?):\n  {examples}"
                + (f"\n  ... and {more} more (see the log)" if more > 0 else "")
            )

    def _progress(self, result: Resigned) -> None:
        """A progress line after a batch: every batch with -v 2, else now and then."""
        now = time.monotonic()
        if self._quiet or not (self._every_batch or now - self._last_progress >= PROGRESS_INTERVAL):
            return
        self._last_progress = now
        verb = "would re-sign" if result.dry_run else "re-signed"
        self.stdout.write(
            f"resign_outbox: batch {result.batches}: scanned {result.scanned} rows "
            f"(ids up to {result.position} of {result.last_id}), {verb} {result.resigned}"
        )


def summary(result: Resigned) -> str:
    """The final line: what was re-signed (or would be), out of what was scanned."""
    verb = "would re-sign" if result.dry_run else "re-signed"
    text = (
        f"resign_outbox{' (dry run)' if result.dry_run else ''}: {verb} {result.resigned} rows of "
        f"{result.source} signed with {result.old_key!r}, with {result.new_key!r}; "
        f"scanned {result.scanned} rows in {result.batches} batches"
    )
    if result.changed:
        text += f"; {result.changed} rows changed or busy while this ran (run it again)"
    if result.refused:
        text += f"; {result.refused} rows do not verify, left as they are"
    return text
