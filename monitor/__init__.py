"""Ailuro's web monitor: a read-only, BigPanDA-style view of the dispatcher's database.

It reads the same tables the dispatcher writes (``dispatcher.store.schema``) through a read-only
connection, renders HTML on the server (Jinja2, own CSS/JS and inline SVG plots), and answers every
page as JSON too (``?json`` or ``Accept: application/json``). Start it with ``ailuro monitor``.
"""
