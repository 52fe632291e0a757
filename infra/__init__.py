"""Local infrastructure: start/stop the dev stack (Tansu, SeaweedFS, clickhouse-server), topics.

One module per service: ``broker`` (Tansu), ``s3`` (SeaweedFS), ``clickhouse_server`` (its
config templates in ``config/``); ``stack`` composes them for ``gridpulse up/down/status``;
``service`` is their common base, ``ports`` the loopback ports, ``topics`` the Kafka topics.
"""
