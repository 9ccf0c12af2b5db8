"""The plain parts of evaluation and promotion: prompts, config checks, the
ledger's "who served when", the pipeline's commit hand-over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sluice.core.config import EvaluationConfig, PromotionConfig
from sluice.core.evaluation.generation import eval_prompts
from sluice.core.registry.ledger import LedgerEntry, served_at


def test_eval_prompts_place_the_contexts_by_the_template():
    row = {"question": "When does it open?", "contexts": ["Gate A opens at 07:30.", "Gate B opens at 09:00."]}
    settings = EvaluationConfig(prompt_template="Context: {contexts}\nQuestion: {question}", context_separator=" | ")
    (messages,) = eval_prompts([row], settings)
    assert messages == [{"role": "system", "content": "Answer from the context."},
                        {"role": "user", "content": "Context: Gate A opens at 07:30. | Gate B opens at 09:00.\n"
                                                    "Question: When does it open?"}]
    (bare,) = eval_prompts([row], EvaluationConfig(system_prompt=None))
    assert [m["role"] for m in bare] == ["user"]


def test_a_promotion_policy_naming_an_unknown_metric_is_refused():
    with pytest.raises(ValidationError, match="min_metrics: 'rouge_l'"):
        PromotionConfig(min_metrics={"rouge_l": 0.3})
    with pytest.raises(ValidationError, match="must_beat_champion: 'accuracy'"):
        PromotionConfig(must_beat_champion=["accuracy"])
    assert PromotionConfig(min_metrics={"faithfulness": 0.7}).min_metrics == {"faithfulness": 0.7}


def _entry(at: datetime, alias: str, old: str | None, new: str | None, action: str = "promote") -> LedgerEntry:
    return LedgerEntry(at=at, model="m", alias=alias, from_version=old, to_version=new, action=action,
                       flow_run="f", evidence_run="r")


def test_the_ledger_says_which_version_served_when():
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    entries = [_entry(t0, "champion", None, "1"),
               _entry(t0 + timedelta(days=1), "previous", None, "1"),
               _entry(t0 + timedelta(days=1), "champion", "1", "2"),
               _entry(t0 + timedelta(days=2), "champion", "2", "1", "rollback")]
    assert served_at(entries, t0 - timedelta(seconds=1)) is None
    assert served_at(entries, t0) == "1"
    assert served_at(entries, t0 + timedelta(hours=30)) == "2"
    assert served_at(entries, t0 + timedelta(days=3)) == "1"


def test_the_pipeline_trains_on_main_after_the_last_ingest():
    from sluice.core.data.batch import IngestResult
    from sluice.core.lake.records import CommitRef
    from sluice.core.pipeline import main_commit_after

    def result(commit: str | None) -> IngestResult:
        return IngestResult.model_construct(main_commit=CommitRef.model_construct(commit_id=commit) if commit
                                            else None)

    assert main_commit_after([]) is None
    assert main_commit_after([result("a"), result(None), result("c")]) == "c"
