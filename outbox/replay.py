"""Re-deliver retained events to one consumer service: ``manage.py replay_events``.

Published rows stay in ``outbox_message`` until ``prune_outbox`` removes them (the retention
window), so they can be sent again. A replay:

* **selects** published rows by time range (``occurred_at``), type, aggregate and correlation id,
  only rows published when the run started (``snapshot_at``), and only the ``(type, version)``
  pairs the service has handlers for (the rest of the match is counted as *skipped*);
* reads every database that holds an outbox (a service on its own database has its own), each
  **in id order**, which is each aggregate's commit order: ``record_event`` takes the aggregate's
  sequence row lock *before* inserting the row, so a later event of the aggregate can only draw
  its id after the earlier one committed. The databases' streams are interleaved by event time,
  each kept in its own order;
* publishes **copies straight to ``<service>.events``** through the default exchange, so no other
  subscriber sees anything: same body bytes (the payload's stored text, as the relay sends
  it), properties and ``ce-*`` envelope (``message_id`` = event id), plus
  ``x-outbox-replay: true`` and ``x-outbox-replay-run: <run id>`` (and
  ``x-outbox-reprocess: true`` for ``--reprocess``), in batches with publisher confirms;
* records the run (:class:`~outbox.models.ReplayRun`): filters, per-database cursor of the last
  row whose batch was confirmed, counters, ``finished_at``.

Interrupting is safe. Without ``--reprocess`` the service's inbox drops every event it already
handled, so re-running anything is harmless. With ``--reprocess`` the service deduplicates on
``(service, uuid5(event id, run id))`` (see ``outbox.consumer.inbox.inbox_key``): running the
*same command* again resumes the unfinished run with the same run id, from its cursor; the batch
that was confirmed but not yet recorded is sent again and dropped by the inbox. Each event is
therefore applied once per run. ``new_run=True`` starts a fresh run (everything applied again).
"""

import copy
import hashlib
import heapq
import json
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import reduce
from operator import or_
from typing import Any

import amqp
from django.db import connections
from django.db.models import Count, Q, QuerySet, TextField
from django.db.models.functions import Cast, Now
from django.utils import timezone

from outbox.broker import CONNECTION_ERRORS, close_quietly, connect
from outbox.conf import get_settings
from outbox.consumer.events import REPLAY_HEADER, REPLAY_RUN_HEADER, REPROCESS_HEADER
from outbox.consumer.service import ConsumerService
from outbox.exceptions import OutboxError
from outbox.models import OutboxMessage, ReplayRun
from outbox.publisher import Publisher
from outbox.retention import inbox_memory_start
from outbox.selectors import outbox_aggregate_types

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
# TEST-ONLY: seconds to sleep after a batch was confirmed by the broker and before the run's
# cursor is saved, so a test can SIGKILL the replay in exactly that window. Never in production.
PAUSE_AFTER_CONFIRM_ENV = "OUTBOX_TEST_REPLAY_PAUSE_AFTER_CONFIRM"
# Advisory locks in the two-key form (classid, objid): one replay process per run at a time.
RUN_LOCK_NAMESPACE = 0x7270
_AGE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

Progress = Callable[[int, int], None]


class ReplayError(OutboxError):
    """The replay cannot start or had to stop (the run, if any, stays resumable)."""


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """``2026-11-20``, ``2026-11-20T10:00``, ``...+01:00`` (naive = UTC), or an age: ``2h`` ago.

    Ages (``90s``, ``15m``, ``12h``, ``30d``) count back from ``now``.
    """
    match = _AGE.match(text)
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (now or timezone.now()) - delta
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ReplayError(
            f"{text!r} is neither an ISO 8601 date/time nor an age such as 90s, 15m, 12h, 30d"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ReplayFilters:
    """What to replay. Values of one filter are OR-ed, different filters AND-ed.

    ``aggregates`` are ``"<aggregate type>:<id>"`` or a bare ``"<id>"`` (any aggregate type).
    ``include_pending`` also selects rows not marked published yet (never parked ones): a
    rebuild needs them, because the relay marks a row *after* the broker confirmed it, so a
    service may already have applied (and the rebuild wiped) an event whose row is still pending.
    """

    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()
    aggregates: tuple[str, ...] = ()
    correlations: tuple[str, ...] = ()
    include_pending: bool = False

    def apply(self, queryset: QuerySet) -> QuerySet:
        """Narrow a queryset of outbox rows (published ones: see :func:`published_rows`)."""
        if self.since is not None:
            queryset = queryset.filter(occurred_at__gte=self.since)
        if self.until is not None:
            queryset = queryset.filter(occurred_at__lt=self.until)
        if self.types:
            queryset = queryset.filter(type__in=self.types)
        if self.aggregates:
            types = outbox_aggregate_types(using=queryset.db)
            queryset = queryset.filter(
                reduce(or_, (_aggregate_q(text, types) for text in self.aggregates))
            )
        if self.correlations:
            queryset = queryset.filter(correlation_id__in=self.correlations)
        return queryset


def _aggregate_q(text: str, aggregate_types: list[str]) -> Q:
    kind, sep, ident = text.partition(":")
    if sep:
        return Q(aggregate_type=kind, aggregate_id=ident)
    # A bare id in any type: naming every type present lets the unique (aggregate_type,
    # aggregate_id, sequence) index serve it; `aggregate_id = ...` alone walks that whole index
    # (PostgreSQL 15 has no skip scan), which grows with the retained log.
    return Q(aggregate_type__in=aggregate_types, aggregate_id=text)


def published_rows(*, using: str, snapshot_at: datetime | None = None) -> QuerySet:
    """Published (retained) rows: what the search indexes cover and what replay reads."""
    queryset = OutboxMessage.objects.using(using).filter(published_at__isnull=False)
    if snapshot_at is not None:
        queryset = queryset.filter(published_at__lte=snapshot_at)
    return queryset


def handled_by(service: ConsumerService) -> Q:
    """Rows of a ``(type, version)`` the service has a handler for."""
    pairs = service.handled_types()
    if not pairs:
        return Q(pk__in=[])
    return reduce(or_, (Q(type=type_, schema_version=version) for type_, version in pairs))


def outbox_databases() -> list[str]:
    """One alias per distinct database (aliases sharing a database are read once).

    ``default`` first, then the others sorted: the same configuration always picks the same
    alias, which keys a run's cursors.
    """
    seen: dict[tuple[str, str, str], str] = {}
    for alias in sorted(connections.settings, key=lambda a: (a != "default", a)):
        conf = connections[alias].settings_dict
        if "postgresql" not in conf.get("ENGINE", ""):
            continue
        key = (str(conf.get("HOST") or ""), str(conf.get("PORT") or ""), str(conf.get("NAME")))
        seen.setdefault(key, alias)
    return list(seen.values())


@dataclass
class ReplayResult:
    """What a replay invocation did (and, for a dry run, would do)."""

    service: str
    run_id: uuid.UUID | None
    matched: int = 0  # rows matching the filters
    skipped: int = 0  # ...of a type/version the service does not handle
    sent: int = 0  # confirmed by the broker in this invocation
    already_sent: int = 0  # confirmed by earlier invocations of the same run (resume)
    remaining: int = 0  # still to send when this invocation stopped
    resumed: bool = False
    finished: bool = False
    dry_run: bool = False
    reprocess: bool = False
    per_type: Counter[str] = field(default_factory=Counter)
    sent_event_ids: list[uuid.UUID] = field(default_factory=list)

    def summary(self) -> str:
        """One line an operator can read."""
        what = "dry run" if self.dry_run else f"run {self.run_id}"
        mode = " (reprocess)" if self.reprocess else ""
        state = ""
        if not self.dry_run:
            state = ", finished" if self.finished else f", unfinished: {self.remaining} to go"
        resumed = f", {self.already_sent} sent earlier (resumed)" if self.resumed else ""
        return (
            f"replay {what} -> {self.service}{mode}: matched {self.matched}, skipped "
            f"{self.skipped} (not handled by {self.service}), "
            f"{'would send' if self.dry_run else 'sent'} "
            f"{self.per_type.total() if self.dry_run else self.sent}{resumed}{state}"
        )


@dataclass(frozen=True)
class _Plan:
    service: ConsumerService
    filters: ReplayFilters
    snapshot_at: datetime
    databases: list[str]
    cursors: dict[str, int]


def fingerprint(
    *, service: str, raw_filters: dict[str, Any], reprocess: bool, databases: list[str]
) -> str:
    """Identifies "the same command": a re-run with it resumes the unfinished run."""
    canonical = json.dumps(
        {"service": service, "filters": raw_filters, "reprocess": reprocess, "db": databases},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def replay_events(
    service: ConsumerService,
    *,
    filters: ReplayFilters,
    raw_filters: dict[str, Any] | None = None,
    reprocess: bool = False,
    dry_run: bool = False,
    databases: list[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    resume: uuid.UUID | None = None,
    new_run: bool = False,
    progress: Progress | None = None,
    collect_ids: bool = False,
    inbox_wiped: bool = False,
) -> ReplayResult:
    """Replay the retained events matching ``filters`` to ``service``'s queue only.

    ``raw_filters`` are the filters as the operator typed them (e.g. ``{"since": "2h"}``): a
    later call with the same ones (and the same service, ``reprocess`` and databases) resumes
    the latest unfinished run instead of starting a new one, unless ``new_run``. ``resume``
    names a run explicitly (its own filters are used). ``limit`` stops after that many sends,
    leaving the run unfinished (a canary, or a throttled replay in slices). ``collect_ids``
    lists the sent event ids in the result (to wait for the service to handle them).

    Without ``reprocess``, only events the service's inbox still remembers are sent (see
    :func:`outbox.retention.inbox_memory_start`): no ``since`` means "from that moment on", an
    earlier ``since`` is refused — those events might be applied twice. ``inbox_wiped`` lifts
    the limit for a caller that deleted the service's inbox rows itself (a rebuild: everything
    is new to the service then).

    Raises :class:`ReplayError` when the run cannot start or the broker fails mid-way (the run
    stays unfinished and resumable).
    """
    if batch_size < 1:
        raise ReplayError("batch size must be at least 1")
    if not service.handled_types():
        raise ReplayError(f"service {service.name!r} has no handlers: nothing to replay")
    raw_filters = raw_filters if raw_filters is not None else _raw(filters)
    if not (reprocess or inbox_wiped):
        filters = within_inbox_memory(filters, service=service)
    databases = databases or outbox_databases()
    if dry_run:
        plan = _Plan(service, filters, timezone.now(), databases, {})
        return _dry_run(plan, reprocess=reprocess)
    run, resumed = _open_run(
        service,
        filters=filters,
        raw_filters=raw_filters,
        reprocess=reprocess,
        databases=databases,
        resume=resume,
        new_run=new_run,
    )
    if resumed and not (run.reprocess or inbox_wiped):
        _check_still_remembered(run)
    with _run_lock(run):
        result = _send(
            run,
            service=service,
            resumed=resumed,
            batch_size=batch_size,
            limit=limit,
            progress=progress,
            collect_ids=collect_ids,
        )
    return result


def within_inbox_memory(filters: ReplayFilters, *, service: ConsumerService) -> ReplayFilters:
    """``filters`` limited to the events ``service``'s inbox still remembers (no ``since``: from
    then on); :class:`ReplayError` for a ``since`` before that."""
    start = inbox_memory_start()
    if filters.since is None:
        return replace(filters, since=start)
    if filters.since < start:
        since = filters.since.astimezone(UTC)
        raise ReplayError(
            f"--since {since:%Y-%m-%d %H:%M:%S} UTC is older than what the inbox of "
            f"{service.name} surely remembers (events since {start:%Y-%m-%d %H:%M:%S} UTC: "
            "OUTBOX_INBOX_RETENTION_DAYS less a day's margin): it may have forgotten applying "
            "older events and would apply them again. Nothing was sent. Replay from "
            f"{start:%Y-%m-%dT%H:%M:%S}Z or later, or pass --reprocess to apply every selected "
            "event again on purpose."
        )
    return filters


def _check_still_remembered(run: ReplayRun) -> None:
    """Refuse to resume a run whose first events the inbox may have forgotten since it started
    (no margin here: the run's ``since`` already had one when it was chosen)."""
    forgotten_before = inbox_memory_start(margin=timedelta(0))
    if run.since is None or run.since < forgotten_before:
        since = f"{run.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if run.since else "the start"
        raise ReplayError(
            f"run {run.pk} replays events from {since} on, which the inbox of {run.service} may "
            "have forgotten by now: resuming it could apply them twice. Nothing was sent. Start "
            "a new run (--new-run), or pass --reprocess to apply the events again on purpose."
        )


def _raw(filters: ReplayFilters) -> dict[str, Any]:
    return {
        "since": filters.since.isoformat() if filters.since else None,
        "until": filters.until.isoformat() if filters.until else None,
        "types": sorted(filters.types),
        "aggregates": sorted(filters.aggregates),
        "correlations": sorted(filters.correlations),
        **({"include_pending": True} if filters.include_pending else {}),
    }


def _filters_of(run: ReplayRun) -> ReplayFilters:
    raw = run.filters
    return ReplayFilters(
        since=run.since,
        until=run.until,
        types=tuple(raw.get("types") or ()),
        aggregates=tuple(raw.get("aggregates") or ()),
        correlations=tuple(raw.get("correlations") or ()),
        include_pending=bool(raw.get("include_pending")),
    )


def _open_run(
    service: ConsumerService,
    *,
    filters: ReplayFilters,
    raw_filters: dict[str, Any],
    reprocess: bool,
    databases: list[str],
    resume: uuid.UUID | None,
    new_run: bool,
) -> tuple[ReplayRun, bool]:
    """The run to (re)start: the one named, the latest unfinished one like it, or a new one."""
    runs = ReplayRun.objects.using("default")
    if resume is not None:
        run = runs.filter(pk=resume).first()
        if run is None:
            raise ReplayError(f"no replay run {resume}")
        if run.service != service.name:
            raise ReplayError(f"run {resume} replays to {run.service!r}, not {service.name!r}")
        if run.finished_at is not None:
            raise ReplayError(f"run {resume} finished at {run.finished_at:%Y-%m-%d %H:%M:%S}")
        return run, True
    key = fingerprint(
        service=service.name, raw_filters=raw_filters, reprocess=reprocess, databases=databases
    )
    if not new_run:
        run = runs.filter(fingerprint=key, finished_at__isnull=True).order_by("-created_at").first()
        if run is not None:
            return run, True
    # Rows published from now on were delivered live: the run's selection is frozen here, on the
    # database's clock (the relay stamps published_at with it), not this process's.
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        snapshot_at = cursor.fetchone()[0]
    run = runs.create(
        id=uuid.uuid4(),
        service=service.name,
        fingerprint=key,
        filters={**_raw(filters), "given": raw_filters},
        since=filters.since,
        until=filters.until,
        snapshot_at=snapshot_at,
        reprocess=reprocess,
        databases=databases,
    )
    return run, False


class _run_lock:
    """A session advisory lock on the run: two processes never replay one run at once."""

    def __init__(self, run: ReplayRun) -> None:
        self.run = run

    def __enter__(self) -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                [RUN_LOCK_NAMESPACE, str(self.run.pk)],
            )
            if not cursor.fetchone()[0]:
                raise ReplayError(f"run {self.run.pk} is being replayed by another process")

    def __exit__(self, *exc: object) -> None:
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))",
                    [RUN_LOCK_NAMESPACE, str(self.run.pk)],
                )
        except Exception:  # the session is gone, and the lock with it
            logger.debug("replay: could not release the run lock", exc_info=True)


def _selection(plan: _Plan, alias: str) -> QuerySet:
    if not plan.filters.include_pending:
        return plan.filters.apply(published_rows(using=alias, snapshot_at=plan.snapshot_at))
    rows = OutboxMessage.objects.using(alias).filter(
        Q(published_at__isnull=False, published_at__lte=plan.snapshot_at)
        | Q(published_at__isnull=True, parked_at__isnull=True, created_at__lte=plan.snapshot_at)
    )
    return plan.filters.apply(rows)


def _count(plan: _Plan) -> tuple[int, int, int, Counter[str]]:
    """(matched, handled, handled and not yet sent, handled per type) over every database."""
    matched = handled = todo = 0
    per_type: Counter[str] = Counter()
    for alias in plan.databases:
        selection = _selection(plan, alias)
        matched += selection.count()
        mine = selection.filter(handled_by(plan.service))
        for type_, count in _counts_by_type(mine):
            per_type[type_] += count
            handled += count
        todo += mine.filter(id__gt=plan.cursors.get(alias, 0)).count()
    return matched, handled, todo, per_type


def _counts_by_type(queryset: QuerySet) -> list[tuple[str, int]]:
    return list(queryset.values_list("type").annotate(n=Count("id")).order_by("type"))


def _dry_run(plan: _Plan, *, reprocess: bool) -> ReplayResult:
    matched, handled, _, per_type = _count(plan)
    return ReplayResult(
        service=plan.service.name,
        run_id=None,
        matched=matched,
        skipped=matched - handled,
        remaining=handled,
        dry_run=True,
        reprocess=reprocess,
        per_type=per_type,
    )


def _stream(
    plan: _Plan, alias: str, page: int
) -> Iterator[tuple[datetime, int, str, OutboxMessage]]:
    """The rows to send from one database, in id order, read page by page (keyset on id)."""
    last = plan.cursors.get(alias, 0)
    # The body the relay sent is the payload's stored text (a `json` column, outbox.claiming);
    # read that very text (outbox.wire.encode_body sends it as is), not a re-encoded dump.
    mine = (
        _selection(plan, alias)
        .filter(handled_by(plan.service))
        .defer("payload")
        .annotate(payload_json=Cast("payload", output_field=TextField()))
    )
    while True:
        rows = list(mine.filter(id__gt=last).order_by("id")[:page])
        for row in rows:
            yield row.occurred_at, row.id, alias, row
        if len(rows) < page:
            return
        last = rows[-1].id


def _send(
    run: ReplayRun,
    *,
    service: ConsumerService,
    resumed: bool,
    batch_size: int,
    limit: int | None,
    progress: Progress | None,
    collect_ids: bool,
) -> ReplayResult:
    plan = _Plan(service, _filters_of(run), run.snapshot_at, list(run.databases), dict(run.cursors))
    unknown = [alias for alias in plan.databases if alias not in connections.settings]
    if unknown:
        raise ReplayError(f"run {run.pk} reads databases not configured here: {unknown}")
    matched, handled, todo, per_type = _count(plan)
    result = ReplayResult(
        service=service.name,
        run_id=run.pk,
        matched=matched,
        skipped=matched - handled,
        already_sent=handled - todo,
        remaining=todo,
        resumed=resumed,
        reprocess=run.reprocess,
        per_type=per_type,
    )
    ReplayRun.objects.using("default").filter(pk=run.pk).update(
        matched=matched, skipped=result.skipped, attempts=run.attempts + 1, updated_at=Now()
    )
    total = min(todo, limit) if limit is not None else todo
    if progress:
        progress(0, total)
    settings = get_settings()
    publisher = Publisher(
        url=settings.broker_url,
        confirm_timeout=settings.confirm_timeout,
        # These rows were published once already; the replay headers add a few bytes.
        max_message_bytes=settings.max_message_bytes + 4096,
        connect_timeout=settings.connect_timeout,
    )
    pause = float(os.environ.get(PAUSE_AFTER_CONFIRM_ENV) or 0)
    try:
        _check_queue(service, settings.broker_url, settings.connect_timeout)
        publisher.connect()
        merged = heapq.merge(*(_stream(plan, alias, batch_size) for alias in plan.databases))
        batch: list[tuple[str, OutboxMessage]] = []
        for _, _, alias, row in merged:
            if limit is not None and result.sent + len(batch) >= limit:
                break
            batch.append((alias, row))
            if len(batch) >= batch_size:
                _publish_batch(publisher, run, service, batch, result, plan, pause, collect_ids)
                batch = []
                if progress:
                    progress(result.sent, total)
        if batch:
            _publish_batch(publisher, run, service, batch, result, plan, pause, collect_ids)
            if progress:
                progress(result.sent, total)
    except CONNECTION_ERRORS as exc:
        raise ReplayError(
            f"broker connection failed after {result.sent} sent ({exc}); run the same command "
            f"again to resume run {run.pk}"
        ) from exc
    finally:
        publisher.close()
    result.remaining = todo - result.sent
    if result.remaining <= 0:
        result.finished = True
        ReplayRun.objects.using("default").filter(pk=run.pk).update(
            finished_at=Now(), updated_at=Now()
        )
    return result


def _check_queue(service: ConsumerService, url: str, timeout: float) -> None:
    connection = connect(url, connect_timeout=timeout)
    try:
        connection.channel().queue_declare(service.queue_name, passive=True)
    except amqp.exceptions.NotFound as exc:
        raise ReplayError(
            f"queue {service.queue_name!r} does not exist: run `manage.py setup_broker` first"
        ) from exc
    finally:
        close_quietly(connection)


def replay_copy(row: OutboxMessage, *, service: ConsumerService, run: ReplayRun) -> OutboxMessage:
    """An unsaved copy of ``row`` routed to the service's queue, marked as a replay.

    Envelope, body and ``message_id`` are the original's (``outbox.wire`` builds the message);
    only the routing (default exchange, routing key = queue name) and three headers differ.
    """
    replayed = copy.copy(row)
    replayed.exchange, replayed.routing_key = "", service.queue_name
    headers = {**(row.headers or {}), REPLAY_HEADER: "true", REPLAY_RUN_HEADER: str(run.pk)}
    if run.reprocess:
        headers[REPROCESS_HEADER] = "true"
    replayed.headers = headers
    return replayed


def _publish_batch(
    publisher: Publisher,
    run: ReplayRun,
    service: ConsumerService,
    batch: list[tuple[str, OutboxMessage]],
    result: ReplayResult,
    plan: _Plan,
    pause: float,
    collect: bool,
) -> None:
    """Publish one batch with confirms; only a fully confirmed batch moves the cursors."""
    outcome = publisher.publish([replay_copy(row, service=service, run=run) for _, row in batch])
    if outcome.connection_error is not None:
        raise outcome.connection_error
    if outcome.failed or outcome.unsettled:
        reasons = "; ".join(sorted({f.error for f in outcome.failed})) or "unconfirmed"
        raise ReplayError(
            f"{len(outcome.failed) + len(outcome.unsettled)} of {len(batch)} replayed messages "
            f"were not confirmed ({reasons}); run the same command again to resume run {run.pk}"
        )
    if pause:  # TEST-ONLY hook, see PAUSE_AFTER_CONFIRM_ENV
        logger.warning("replay %s: batch confirmed; pausing before recording (test hook)", run.pk)
        time.sleep(pause)
    for alias, row in batch:
        plan.cursors[alias] = max(plan.cursors.get(alias, 0), row.id)
        if collect:
            result.sent_event_ids.append(row.event_id)
    result.sent += len(batch)
    ReplayRun.objects.using("default").filter(pk=run.pk).update(
        cursors=plan.cursors, sent=run.sent + result.sent, updated_at=Now()
    )
    logger.info("replay %s -> %s: %s sent", run.pk, service.name, result.sent)


class TextProgress:
    """A plain-text progress bar on a stream (stderr): redrawn in place on a terminal, else a
    line every tenth of the way (logs stay readable)."""

    WIDTH = 30

    def __init__(self, stream: Any, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        filled = round(self.WIDTH * fraction)
        bar = f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}"
        if self.tty:
            self.stream.write(f"\r{bar}" + ("\n" if done >= total else ""))
        else:
            tenth = int(fraction * 10)
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
            self.stream.write(f"{bar}\n")
        self.stream.flush()
