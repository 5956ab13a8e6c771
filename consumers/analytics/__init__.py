"""The analytics service: sales, revenue, order funnel and delivery times, from events alone.

It was added without any change to the producers: it subscribes to the saga's events, keeps its
own tables (on its own database alias, ``analytics``) and can be rebuilt from the retained events
(``manage.py rebuild_projection analytics``). See docs/replay.md.
"""
