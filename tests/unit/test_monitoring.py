"""Drift and quality monitoring without Prefect: the statistics on data whose answer is known, the request
log and feedback readers on files the server's own writers made, and the decision on traffic drawn from the
training distribution (no drift) and on shifted traffic (other topics, other lengths: drift, with reasons),
embedded by the real MiniLM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from sluice.core.config import SluiceConfig
from sluice.core.config.monitoring import MonitoringConfig, MonitoringThresholds
from sluice.core.monitoring.event import DRIFT_EVENT, ON_DRIFT_LABEL, drift_event
from sluice.core.monitoring.markdown import monitoring_markdown
from sluice.core.monitoring.report import MonitoringReport, build_report, drifted, report_metrics
from sluice.core.monitoring.statistics import (
    AnswerSignals,
    answer_signals,
    embedding_drift,
    length_drift,
    out_of_domain,
    population_stability_index,
    sample,
)
from sluice.core.monitoring.traffic import (
    RequestLogMissing,
    Window,
    WindowTraffic,
    aligned_window,
    read_window,
)
from sluice.core.request_log import latest_ratings, user_words
from tests.monitoring_traffic import (
    other_topics,
    short_questions,
    training_distribution,
    training_user_turns,
    write_requests,
)

NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WINDOW = Window(start=NOON - timedelta(hours=1), end=NOON)


# ------------------------------------------------------------------ statistics on known data


def test_prompt_lengths_from_one_distribution_do_not_drift_and_shifted_ones_do():
    rng = np.random.default_rng(0)
    reference = rng.poisson(40, 600).astype(float)
    same, longer = rng.poisson(40, 100).astype(float), rng.poisson(60, 100).astype(float)
    steady, shifted = length_drift(reference, same), length_drift(reference, longer)
    assert steady.ks_statistic < 0.2 and steady.ks_pvalue > 0.01 and steady.psi < 0.2
    assert shifted.ks_statistic > 0.8 and shifted.ks_pvalue < 1e-10 and shifted.psi > 1
    assert shifted.mean_window > 55 and 38 < shifted.mean_reference < 42


def test_psi_of_a_constant_reference_is_finite_and_sees_a_change():
    reference = np.full(200, 40.0)
    assert population_stability_index(reference, np.full(50, 40.0)) == pytest.approx(0, abs=1e-9)
    assert 1 < population_stability_index(reference, np.full(50, 7.0)) < 20


def _cluster(centre: np.ndarray, count: int, rng: np.random.Generator, noise: float = 0.6) -> np.ndarray:
    vectors = centre + noise * rng.normal(size=(count, len(centre))) / np.sqrt(len(centre))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_mean_embedding_distance_and_its_permutation_p_value():
    rng = np.random.default_rng(1)
    here, there = np.eye(32)[0], np.eye(32)[1]
    reference = _cluster(here, 200, rng)
    steady = embedding_drift(reference, _cluster(here, 60, rng), permutations=200, seed=0)
    moved = embedding_drift(reference, _cluster((here + there) / np.sqrt(2), 60, rng), permutations=200, seed=0)
    assert steady.distance < 0.02 and steady.pvalue > 0.05
    assert moved.distance > 0.2 and moved.pvalue == pytest.approx(1 / 201)
    assert (moved.reference_samples, moved.window_samples) == (200, 60)


def test_out_of_domain_share_has_the_references_own_share_as_its_baseline():
    rng = np.random.default_rng(2)
    here, elsewhere = np.eye(16)[0], np.eye(16)[5]
    reference = _cluster(here, 100, rng, noise=0.3)
    mixed = np.concatenate([_cluster(here, 30, rng, noise=0.3), _cluster(elsewhere, 10, rng, noise=0.3)])
    ood = out_of_domain(reference, mixed, similarity=0.5)
    assert ood.share == pytest.approx(10 / 40) and ood.reference_share == 0.0
    scattered = np.eye(16)[:8]  # no reference prompt has a similar other: all out of domain, themselves included
    assert out_of_domain(scattered, scattered[:2], similarity=0.5).reference_share == 1.0


def test_answer_signals_count_empty_answers_refusals_and_the_mean_rating():
    answers = ["The sluice opens at 07:30.", "  ", "I'm sorry, I cannot help with that.", "",
               "As an AI, I do not know.", "Boats up to 20 metres may pass."]
    signals = answer_signals(answers, MonitoringConfig().refusal_patterns, [5, 1, 3])
    assert signals.empty_share == pytest.approx(2 / 6) and signals.refusal_share == pytest.approx(2 / 6)
    # the same heuristic as the canary's and the probes' (one refusal it knows that a short list missed), and more
    with_extra = answer_signals(["I must decline to open the gate.", "Boats pass at noon."], [r"\bnoon\b"], [])
    assert with_extra.refusal_share == pytest.approx(1.0)
    assert signals.ratings == 3 and signals.mean_rating == pytest.approx(3.0)
    assert answer_signals([], [], []).mean_rating is None


def test_a_sample_is_at_most_its_size_seeded_and_in_order():
    texts = [str(i) for i in range(100)]
    assert sample(texts[:5], 10, 0) == texts[:5]
    drawn = sample(texts, 10, 3)
    assert len(set(drawn)) == 10 and drawn == sorted(drawn, key=int) and drawn == sample(texts, 10, 3)


# ------------------------------------------------------------------ reading what the server wrote


def test_a_window_holds_the_served_versions_answers_between_its_ends(tmp_path):
    log = tmp_path / "serving" / "requests.jsonl"
    write_requests(log, ["before"], WINDOW.start - timedelta(seconds=1), "3")
    write_requests(log, ["first", "second"], WINDOW.start, "3", first_id=10)
    write_requests(log, ["a canary's"], WINDOW.start + timedelta(minutes=5), "4", first_id=20)
    write_requests(log, ["at the end"], WINDOW.end, "3", first_id=30)  # half-open: the next window's
    with log.open("a") as handle:
        rejected = (WINDOW.end - timedelta(minutes=1)).isoformat()
        handle.write(f'{{"id": null, "time": "{rejected}", "status": 429, "model_version": "3"}}\n')
        handle.write('{"id": "torn", "time": "2026-')  # the line the server is appending right now
    traffic = read_window(log, WINDOW, "3")
    assert traffic.prompts == ["first", "second"] and traffic.response_ids == ["chatcmpl-10", "chatcmpl-11"]
    assert (traffic.other_versions, traffic.errors) == (1, 1)


def test_a_missing_or_corrupt_request_log_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(RequestLogMissing, match="serving.state_dir"):
        read_window(tmp_path / "requests.jsonl", WINDOW, "1")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n")
    with pytest.raises(ValueError, match="broken.jsonl:1"):
        read_window(broken, WINDOW, "1")


def test_the_prompt_is_the_last_user_turn_or_the_completion_text():
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "old"},
            {"role": "assistant", "content": "a"}, {"role": "user", "content": "new"}]
    assert user_words(chat) == "new" and user_words("a completion prompt") == "a completion prompt"


def test_ratings_are_the_latest_per_response_from_the_servers_feedback_store(tmp_path):
    from sluice.serving.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "feedback.db")
    for response_id in ("r1", "r2", "r3"):
        store.record_response(response_id, endpoint="chat", model_version="1", prompt="p", completion="c",
                              finish_reason="stop")
    store.add_feedback("r1", 1)
    store.add_feedback("r1", 4)  # changed their mind: the latest counts
    store.add_feedback("r2", 2)
    store.add_feedback("r3", 5)  # not in the window
    store.close()
    assert latest_ratings(tmp_path / "feedback.db", ["r1", "r2", "unrated"]) == {"r1": 4, "r2": 2}
    assert latest_ratings(tmp_path / "absent.db", ["r1"]) == {}


def test_windows_are_aligned_so_a_rerun_judges_the_same_one():
    before = datetime.now(UTC)
    at = aligned_window(60, None)
    assert at.end.minute == 0 and at.end.second == 0 and at.end.microsecond == 0
    assert at.end - at.start == timedelta(hours=1)
    assert before - timedelta(hours=1) < at.end <= datetime.now(UTC)  # the last complete hour
    assert aligned_window(15, NOON) == Window(start=NOON - timedelta(minutes=15), end=NOON)


# ------------------------------------------------------------------ the decision on real embeddings


@pytest.fixture(scope="module")
def embed():  # type: ignore[no-untyped-def]
    from sluice.core.evaluation.metrics.embeddings import default_embedder

    return default_embedder().embed


SMALL = MonitoringConfig(sample_size=96, permutations=200)


def _report(prompts: list[str], embed, answers: list[str] | None = None,  # type: ignore[no-untyped-def]
            ratings: list[int] | None = None) -> MonitoringReport:
    traffic = WindowTraffic(window=WINDOW, version="1", prompts=prompts,
                            answers=answers or ["The sluice opens at 07:30."] * len(prompts),
                            response_ids=[str(i) for i in range(len(prompts))])
    return build_report(traffic, training_user_turns(), ratings or [], embed, SMALL, model_name="m", data_commit="c")


def test_traffic_drawn_from_the_training_distribution_does_not_drift(embed):
    for seed in (11, 12):
        report = _report(training_distribution(60, seed), embed)
        assert drifted(report, SMALL.thresholds) == [], report


def test_traffic_on_other_topics_drifts_on_embeddings_domain_and_length(embed):
    reasons = drifted(_report(other_topics(60, 0), embed), SMALL.thresholds)
    assert [r.split(":")[0] for r in reasons] == ["prompt length drift", "embedding drift", "out-of-domain prompts"]


def test_shorter_prompts_on_the_same_topic_drift_on_length_but_stay_in_domain(embed):
    report = _report(short_questions(60, 3), embed)
    reasons = drifted(report, SMALL.thresholds)
    assert reasons[0].startswith("prompt length drift") and report.length and report.length.mean_window < 12
    assert not any(r.startswith("out-of-domain") for r in reasons)


def test_too_few_requests_decide_nothing(embed):
    report = _report(training_distribution(5, 1), embed)
    assert report.too_few_requests and drifted(report, SMALL.thresholds) == []
    assert "monitor.length_ks" not in report_metrics(report) and report_metrics(report)["monitor.requests"] == 5


@pytest.mark.parametrize(("length", "embedding"), [
    ((0.9, 0.2), (0.004, 0.5)),  # a large length gap in a tiny sample: not significant
    ((0.1, 1e-6), (0.004, 0.5)),  # significant, but a small gap (a busy window sees every ripple)
    ((0.05, 0.9), (0.3, 0.2)),  # far apart embeddings, not significant
    ((0.05, 0.9), (0.01, 1e-3)),  # significant, but close
])
def test_a_statistical_reason_needs_both_a_large_effect_and_a_small_p_value(length, embedding):
    from sluice.core.monitoring.statistics import EmbeddingDrift, LengthDrift

    report = _answers_only(AnswerSignals(answers=50, empty_share=0, refusal_share=0, ratings=0, mean_rating=None))
    report = report.model_copy(update={
        "length": LengthDrift(ks_statistic=length[0], ks_pvalue=length[1], psi=0.5, mean_reference=40,
                              mean_window=30),
        "embedding": EmbeddingDrift(distance=embedding[0], pvalue=embedding[1], reference_samples=96,
                                    window_samples=50)})
    assert drifted(report, MonitoringThresholds()) == []


# ------------------------------------------------------------------ the answer-side thresholds, one by one


def _answers_only(signals: AnswerSignals) -> MonitoringReport:
    from sluice.core.monitoring.statistics import EmbeddingDrift, LengthDrift, OutOfDomain

    return MonitoringReport(window=WINDOW, model_name="m", version="1", data_commit="c", requests=50,
                            other_versions=0, errors=0, training_prompts=600,
                            length=LengthDrift(ks_statistic=0.05, ks_pvalue=0.9, psi=0.01, mean_reference=40,
                                               mean_window=40),
                            embedding=EmbeddingDrift(distance=0.004, pvalue=0.5, reference_samples=96,
                                                     window_samples=50),
                            ood=OutOfDomain(share=0.02, reference_share=0.0, similarity_threshold=0.5),
                            answers=signals)


@pytest.mark.parametrize(("signals", "reason"), [
    (AnswerSignals(answers=50, empty_share=0.3, refusal_share=0, ratings=0, mean_rating=None), "empty answers"),
    (AnswerSignals(answers=50, empty_share=0, refusal_share=0.5, ratings=0, mean_rating=None), "refusals"),
    (AnswerSignals(answers=50, empty_share=0, refusal_share=0, ratings=8, mean_rating=1.5), "feedback"),
])
def test_each_answer_side_threshold_is_a_reason_of_its_own(signals, reason):
    assert [r.split(":")[0] for r in drifted(_answers_only(signals), MonitoringThresholds())] == [reason]


def test_a_low_rating_from_too_few_ratings_or_a_disabled_check_is_no_reason():
    few = AnswerSignals(answers=50, empty_share=0, refusal_share=0, ratings=2, mean_rating=1.0)
    many = few.model_copy(update={"ratings": 10})
    assert drifted(_answers_only(few), MonitoringThresholds()) == []
    assert drifted(_answers_only(many), MonitoringThresholds(min_mean_rating=None)) == []
    steady = many.model_copy(update={"mean_rating": 4.2})
    assert drifted(_answers_only(steady), MonitoringThresholds()) == []


# ------------------------------------------------------------------ event, report, config


def test_the_drift_event_is_one_per_window_and_carries_the_configured_reaction():
    report = _answers_only(AnswerSignals(answers=50, empty_share=0.5, refusal_share=0, ratings=0, mean_rating=None))
    event = drift_event(report, ["empty answers: 50%"], "notify", "run-1")
    again = drift_event(report, ["empty answers: 50%"], "notify", "run-2")
    later = drift_event(report.model_copy(update={"window": Window(start=WINDOW.end, end=WINDOW.end
                                                                   + timedelta(hours=1))}), ["x"], "notify", None)
    assert event.event == DRIFT_EVENT and event.id == again.id != later.id
    assert event.resource["prefect.resource.id"] == "sluice.model.m" and event.resource[ON_DRIFT_LABEL] == "notify"
    assert event.payload["reasons"] == ["empty answers: 50%"] and event.payload["metrics"]["monitor.empty_share"] == 0.5
    with pytest.raises(ValueError, match="reason"):
        drift_event(report, [], "notify", None)


def test_the_markdown_report_has_the_figures_the_reasons_and_a_length_plot(embed):
    report = _report(other_topics(30, 1), embed)
    reasons = drifted(report, SMALL.thresholds)
    markdown = monitoring_markdown(report, reasons, SMALL.thresholds, "run-9", "event-9")
    assert markdown.startswith("# Monitoring `m` version 1: DRIFT")
    assert "| mean-embedding cosine distance (p) |" in markdown and "run-9" in markdown
    assert all(reason in markdown for reason in reasons) and "t: training   w: window" in markdown


def test_monitoring_is_a_section_of_the_config_and_checks_its_values():
    assert SluiceConfig().monitoring.on_drift == "run-pipeline"
    with pytest.raises(ValidationError, match="refusal_patterns"):
        MonitoringConfig(refusal_patterns=["(unclosed"])
    with pytest.raises(ValidationError, match="on_drift"):
        SluiceConfig.model_validate({"monitoring": {"on_drift": "page-someone"}})
