"""Local infrastructure: start/stop the dev stack (Tansu, SeaweedFS, clickhouse-server), topics."""
