"""Evaluation: batched generation on the eval set at the data commit, scored
with ROUGE, RAGAS and an optional LLM judge, recorded as MLflow runs, and
compared pairwise (paired bootstrap) with the model it would replace."""
