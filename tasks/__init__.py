"""Prefect tasks, one module per concern or external system. Each task is
short, returns a small typed record, and declares retries only when its call
is idempotent."""
