"""Prefect flows, one workflow per file. Flows only wire tasks together; the
work is in ``tasks/`` and the decisions are plain functions in ``sluice/``."""
