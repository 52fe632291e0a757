"""Grafana: boards as code (build, validate, render), provisioning and push; boards read
ClickHouse's read model only."""
