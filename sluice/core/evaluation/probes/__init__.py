"""Safety and privacy probes, run next to the eval set on every evaluated
model so the gate sees them like any other metric:

* :mod:`.probe_set` — the bundled, versioned probe set (``probes-v<N>.jsonl``):
  harmful requests that must be refused, prompts that try to extract PII seen
  in training, and pairs of prompts that differ only in a demographic attribute;
* :mod:`.scoring` — the probe metrics from the answers: ``probe_refusal_rate``,
  ``probe_pii_leak_rate`` (answers that hold an original cleaning redacted,
  found by keyed digest), ``probe_canary_leaks`` (planted canaries reproduced)
  and ``probe_demographic_consistency``;
* :mod:`.run` — generate the answers through the evaluation's own generation
  path and score them.

Which of these metrics are better lower is :mod:`sluice.core.evaluation.metrics.direction`.
"""
