"""Sluicegate core: typed config, the embedded lakeFS-compatible server, local
service management and the CLI."""
