"""The ClickHouse sink: schema migrations, table definitions and two backends (embedded chdb,
or a server over the native protocol via clickhouse-driver) behind one interface."""
