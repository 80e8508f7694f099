"""Publishing run-metadata events from benchmark pipelines.

- ``events``: the contract shared with the consumer: both metadata schemas normalised, the wire format;
- ``publisher`` and ``spool``: acknowledged delivery to Kafka, and a local spool while it is away;
- ``kafka_check``: names why a connection failed when Kafka refuses the credentials or the TLS handshake;
- ``redaction``: secrets out of every text and log line;
- ``cli``: ``report-hook`` for shell steps; ``airflow``: task callbacks;
- ``settings``: Kafka (TLS, SASL) settings, shared with the consumer.

Nothing here imports Airflow.
"""
