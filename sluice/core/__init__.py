"""The core: what Sluicegate does, as plain functions and small typed records.

No Prefect here (an import-linter contract holds it): the tasks in ``tasks/``
wrap these functions with retries, caching and logging, and the flows in
``flows/`` wire the tasks. One subpackage per stage, and imports only go down:

- ``pipeline``: the whole run's result and report (uses every stage);
- ``promotion``: the gate, alias moves, their report;
- ``evaluation`` and ``training`` (siblings): evaluate a model; fine-tune one;
- ``registry``: the MLflow store, the model registry client, the alias ledger;
- ``lake``: lakeFS through the official SDK; the published data of a commit;
- ``data``: dataset kinds, readers, cleaning, contracts, validation, batches;
- ``config``, ``lineage``, ``project``: the typed configuration, the lineage
  vocabulary, where the project's files are.
"""
