"""Drift and quality monitoring of live traffic (no Prefect here; the ``monitor`` flow wires it).

* :mod:`.traffic` — the serving request log of one window, the feedback on it, the training prompts;
* :mod:`.statistics` — the statistics on plain numbers and vectors (scipy, numpy);
* :mod:`.report` — :func:`build_report` for one window and the decision :func:`drifted`;
* :mod:`.markdown` — the report as markdown, with a text plot of prompt lengths;
* :mod:`.event` — the ``sluice.monitor.drift`` event that prefect.yaml's triggers match;
* :mod:`.record` — the served version's lineage, and each window as an MLflow monitoring run.

Why not Evidently: see the README's "Monitoring".
"""
