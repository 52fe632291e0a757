"""Grafana: dashboards as code and provisioning; boards read ClickHouse only (next issue)."""
