"""Reusable transactional outbox, relay, inbox and consumers (knows nothing about fitness).

Record events with ``from outbox.recording import record_event``; see docs/outbox.md.
"""
