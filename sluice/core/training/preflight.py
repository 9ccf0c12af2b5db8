"""What is checked before the training process starts, so that a problem
the trainer would hit minutes later is a clear error now: a chat template
whose assistant tokens cannot be told apart (assistant-only loss)."""

from __future__ import annotations

from sluice.core.config import TrainingConfig
from sluice.core.lake.published import PublishedData

SAMPLE_CONVERSATIONS = 32  # the first rows: a template that fails, fails on ordinary chats too


def check_assistant_only_loss(training: TrainingConfig, base_path: str, data: PublishedData) -> int:
    """Raise the chat template's problem (a ``ModelError`` naming the setting to change) when assistant-only
    loss is asked for and cannot be computed; the number of conversations checked (0: nothing to check)."""
    if training.method != "sft" or not training.assistant_only_loss:
        return 0
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from sluice.core.models.chat_templates import check_template

    conversations = []
    for file in data.local_files:
        conversations += pq.read_table(file, columns=["messages"])["messages"].to_pylist()
        if len(conversations) >= SAMPLE_CONVERSATIONS:
            break
    conversations = conversations[:SAMPLE_CONVERSATIONS]
    check_template(AutoTokenizer.from_pretrained(base_path), conversations)
    return len(conversations)
