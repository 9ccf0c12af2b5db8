"""Evaluation metrics: plain functions of predictions and references, one module per family.

Three families, none of which touches Prefect or MLflow:

* :func:`text.score_without_llm` — ROUGE, BLEU, string similarity, exact match and
  embedding similarity, per sample. BLEU, string similarity, exact match and
  semantic similarity are RAGAS's definitions, computed in bulk: RAGAS's
  classes score one pair per coroutine and embed one string per model call,
  so the embeddings gain most from batching (2-30x on a 2-core CPU,
  depending on load; see benchmarks/eval_metrics.py). Tests pin every
  number to RAGAS's own class.
* :func:`judge.score_with_judge` — RAGAS's LLM-judge metrics against any
  OpenAI-compatible endpoint, each sample judged ``repeats`` times. A failed
  attempt is NaN and counted, never 0: "not measured" must not read as a
  bad score, nor average into a pass.
* :func:`bootstrap.paired_bootstrap` — is a candidate really better than the baseline
  on the same samples, or is the difference noise?

Heavy libraries (ragas, torch, sentence-transformers, sacrebleu) are imported
inside the functions that need them, so importing this module stays cheap.
"""
