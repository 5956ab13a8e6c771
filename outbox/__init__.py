"""Reusable transactional outbox, relay, inbox and consumer framework (knows nothing about fitness)."""
