"""Turns finished performance CI runs into report documents.

The data's path, one module per step:

- ``worker``: the Kafka group member; decodes events (``producer_hooks.events``), keeps offsets
  honest while runs are built concurrently (``tracker``), parks what it cannot use (``deadletter``);
- ``pipeline``: one run's report: ``results`` (Elasticsearch), ``metrics`` over ``profiles`` through
  ``thanos``, ``links``, shaped by ``report`` and stored by ``sink``;
- ``rebuild``: many runs at once, found by ``replay`` (the topic) or ``backfill`` (the metadata index);
- ``settings``, ``retry``, ``elastic``, ``topics``: configuration and connections; ``cli``: the commands.
"""
