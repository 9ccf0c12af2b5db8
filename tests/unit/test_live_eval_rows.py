"""Live traffic → eval rows, on a real request log and feedback store (the classes sluice serve writes with)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.core.config import EvaluationConfig
from sluice.core.data.live_eval import in_sample, live_eval_rows, question_and_contexts, template_reader
from sluice.serving.feedback import FeedbackStore
from sluice.serving.telemetry import RequestLog

SETTINGS = EvaluationConfig()


def chat(question: str, context: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer from the context."},
            {"role": "user", "content": SETTINGS.prompt_template.format(contexts=context, question=question)}]


def serve(log: RequestLog, store: FeedbackStore, rid: str, prompt, answer: str) -> None:  # type: ignore[no-untyped-def]
    store.record_response(rid, endpoint="chat", model_version="1", prompt=prompt, completion=answer,
                          finish_reason="stop")
    log.write({"id": rid, "time": "2026-12-07T20:00:00+00:00", "status": 200, "model_version": "1",
               "prompt": prompt, "completion": answer})


def rows_of(tmp_path: Path, **overrides):  # type: ignore[no-untyped-def]
    settings = {"sample_rate": 1.0, "max_rows": 100, "good_rating": 4, "template": SETTINGS.prompt_template,
                "separator": SETTINGS.context_separator, **overrides}
    return live_eval_rows(tmp_path / "requests.jsonl", tmp_path / "feedback.db", **settings)


def test_template_is_read_back_into_question_and_contexts():
    reader = template_reader(SETTINGS.prompt_template)
    text = SETTINGS.prompt_template.format(contexts="The Elm lock opens at 06:00.", question="When does Elm open?")
    assert question_and_contexts(text, reader, " ") == ("When does Elm open?", ["The Elm lock opens at 06:00."])
    assert question_and_contexts("Context: A | B\nQuestion: Q?", reader, " | ") == ("Q?", ["A", "B"])
    assert question_and_contexts("When does Elm open?", reader, " ") is None
    with pytest.raises(ValueError, match="prompt_template"):
        template_reader("Question: {question}")


def test_sample_is_stable_and_about_the_rate():
    ids = [f"chatcmpl-{i}" for i in range(4000)]
    first = [i for i in ids if in_sample(i, 0.25)]
    assert first == [i for i in ids if in_sample(i, 0.25)]
    assert 900 < len(first) < 1100


def test_reference_is_preferred_answer_else_a_well_rated_one_else_the_prompt_is_left_out(tmp_path):
    log, store = RequestLog(tmp_path / "requests.jsonl"), FeedbackStore(tmp_path / "feedback.db")
    elm = chat("When does the Elm lock open?", "The Elm lock opens at 06:00.")
    serve(log, store, "r1", elm, "At noon.")
    serve(log, store, "r2", elm, "It opens at 06:00.")  # the same prompt answered again, rated well
    store.add_feedback("r1", 1)
    store.add_feedback("r2", 5)
    oak = chat("When does the Oak lock open?", "The Oak lock opens at 07:00.")
    serve(log, store, "r3", oak, "Never.")
    store.add_feedback("r3", 1, preferred="The Oak lock opens at 07:00.")
    ash = chat("When does the Ash lock open?", "The Ash lock opens at 08:00.")
    serve(log, store, "r4", ash, "At 08:00, I think.")
    store.add_feedback("r4", 5)
    store.add_feedback("r4", 3)  # the latest rating counts: no longer good
    serve(log, store, "r5", [{"role": "user", "content": "Hello there, who are you?"}], "A model.")
    store.add_feedback("r5", 5)
    log.write({"id": None, "time": "2026-12-07T20:00:00+00:00", "status": 429, "model_version": "1"})
    # @challenger's shadow copy of r3 (never returned to a client): not live traffic of the served model
    log.write({"id": "shadow-1", "time": "2026-12-07T20:00:00+00:00", "status": 200, "model_version": "2",
               "shadow": True, "shadows": "r3", "prompt": chat("When is the Yew lock shut?", "The Yew lock shuts "
               "at 20:00."), "completion": "At 20:00."})
    store.close()

    drawn = rows_of(tmp_path)
    assert drawn.sampled == 5 and (drawn.no_contexts, drawn.no_reference, drawn.duplicates) == (1, 1, 1)
    assert drawn.rows == [
        {"question": "When does the Elm lock open?", "contexts": ["The Elm lock opens at 06:00."],
         "reference": "It opens at 06:00.", "source": "sluice-serve-traffic"},
        {"question": "When does the Oak lock open?", "contexts": ["The Oak lock opens at 07:00."],
         "reference": "The Oak lock opens at 07:00.", "source": "sluice-serve-traffic"}]
    assert len(rows_of(tmp_path, max_rows=1).rows) == 1
    assert rows_of(tmp_path, good_rating=5).rows[0]["reference"] == "It opens at 06:00."
