"""Fine-tuning: TRL SFT/DPO with PEFT in a process of its own (``accelerate
launch``), resumed from its last checkpoint, reused when an identical
training finished, and tracked in MLflow with its lakeFS lineage."""
