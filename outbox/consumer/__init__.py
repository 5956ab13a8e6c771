"""The consumer side of the outbox: services, handlers, inbox, retries and dead letters.

A *service* (``ConsumerService``) declares handlers per event type and version; ``setup_broker``
declares its queues; one worker per service (a Celery ``ConsumerStep`` or ``consume_events``)
feeds each delivery through :mod:`outbox.consumer.dispatcher`. See docs/consumers.md.
"""
