"""Fault injection against the shop's real processes (``make chaos``, docs/reliability.md)."""
