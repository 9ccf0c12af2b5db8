"""sluice.core.evaluation.metrics against the real libraries: every bulk score is compared with
RAGAS's own metric class, and the judge path talks HTTP to a small
OpenAI-compatible server running in this process."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import select
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from sluice.core.evaluation.metrics import bootstrap, embeddings, ragas_import, text
from sluice.core.evaluation.metrics import judge as judge_metrics

SENTENCE = "The sluice at Ashbrook closes at 19:45 every evening."
# instructor 1.3 compares modes against its own deprecated Mode.FUNCTIONS on every call
pytestmark = pytest.mark.filterwarnings("ignore:FUNCTIONS is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def embedder() -> embeddings.Embedder:
    return embeddings.Embedder()


@pytest.fixture(scope="module")
def ragas() -> types.ModuleType:
    return ragas_import.import_ragas()


def ragas_values(metric, references: list[str], responses: list[str]) -> list[float]:  # type: ignore[no-untyped-def]
    results = metric.batch_score([{"reference": r, "response": p} for r, p in zip(references, responses)])
    return [r.value for r in results]


def pairs(count: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """Predictions/references with the awkward cases mixed in: multi-sentence, short, empty, equal."""
    rng = random.Random(seed)
    places, verbs = ["Ashbrook", "Millford", "Greyweir"], ["closes", "opens", "closed", "is shut"]
    fixed = [("", ""), ("", "The gate opens."), ("Yes", "Yes"), ("The sluice opens. It closes at 9.", SENTENCE),
             (SENTENCE, "The sluice at Ashbrook closes at 19:45. It reopens at dawn."), (SENTENCE, SENTENCE)]

    def one() -> str:
        text = f"The sluice at {rng.choice(places)} {rng.choice(verbs)} at {rng.randint(5, 23)}:{rng.randint(0, 59):02d}."
        return text + (f" Boats wait for {rng.randint(1, 9)} minutes." if rng.random() < 0.4 else "")

    generated = [(one(), one()) for _ in range(count - len(fixed))]
    predictions, references = zip(*(fixed + generated))
    return list(predictions), list(references)


# ------------------------------------------------------------------ importing ragas


def test_ragas_imports_with_the_stand_in_because_the_real_module_is_gone(ragas: types.ModuleType) -> None:
    import langchain_community.chat_models

    assert ragas.__version__.startswith("0.4")
    assert not (Path(langchain_community.chat_models.__file__).parent / "vertexai.py").exists()
    assert getattr(sys.modules[ragas_import._VERTEXAI_MODULE], "SLUICEGATE_STAND_IN", False)
    from ragas.llms.base import is_multiple_completion_supported

    assert not is_multiple_completion_supported(object())  # the stand-in class matches nothing


def test_no_stand_in_when_the_real_module_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import langchain_community.chat_models as chat_models

    (tmp_path / "vertexai.py").write_text("class ChatVertexAI:\n    pass\n")
    monkeypatch.delitem(sys.modules, ragas_import._VERTEXAI_MODULE, raising=False)
    monkeypatch.setattr(chat_models, "__path__", [*chat_models.__path__, str(tmp_path)])
    assert importlib.util.find_spec(ragas_import._VERTEXAI_MODULE) is not None
    assert ragas_import.install_vertexai_stand_in() is False
    assert ragas_import._VERTEXAI_MODULE not in sys.modules
    monkeypatch.setattr(chat_models, "__path__", [p for p in chat_models.__path__ if p != str(tmp_path)])
    assert ragas_import.install_vertexai_stand_in() is True  # and with the file gone, the stand-in goes in


# ------------------------------------------------------------------ metrics without an LLM


def test_identical_strings_score_one_and_disjoint_strings_low(embedder: embeddings.Embedder) -> None:
    same = text.score_without_llm([SENTENCE], [SENTENCE], text.METRICS_WITHOUT_LLM, embedder=embedder)
    assert list(same) == list(text.METRICS_WITHOUT_LLM)
    assert {name: v[0] for name, v in same.items()} == {name: pytest.approx(1.0) for name in same}
    assert all(v[0] <= 1.0 for v in same.values())
    other = text.score_without_llm(["Bananas ripen quickly in warm kitchens."], [SENTENCE], text.METRICS_WITHOUT_LLM,
                                embedder=embedder)
    for name in ("rouge1", "rouge2", "rougeL", "exact_match"):
        assert other[name] == [0.0], name
    assert other["bleu"][0] < 0.05  # only "." is shared; sacrebleu's exp smoothing keeps it above 0
    assert other["string_similarity"][0] < 0.35
    assert other["semantic_similarity"][0] < 0.3


def test_rouge_on_a_hand_checked_pair() -> None:
    # stemmed tokens: the sluic close at dusk / the sluic open at dusk
    scores = text.score_without_llm(["the sluice opens at dusk"], ["the sluice closes at dusk"],
                                 ["rouge1", "rouge2", "rougeL"])
    assert scores == {"rouge1": [pytest.approx(0.8)], "rouge2": [pytest.approx(0.5)], "rougeL": [pytest.approx(0.8)]}
    stemmed = text.score_without_llm(["The gates closed"], ["the gate closes"], ["rouge1", "exact_match"])
    assert stemmed == {"rouge1": [1.0], "exact_match": [0.0]}  # the Porter stemmer is on, as in RAGAS


def test_exact_match_only_for_equal_strings() -> None:
    predictions = [SENTENCE, SENTENCE.lower(), SENTENCE + " ", "", "x"]
    references = [SENTENCE, SENTENCE, SENTENCE, "", "y"]
    assert text.score_without_llm(predictions, references, ["exact_match"]) == {"exact_match": [1.0, 0, 0, 1.0, 0]}


def test_lexical_scores_equal_ragas_own_classes(ragas: types.ModuleType) -> None:
    from ragas.metrics.collections import BleuScore, ExactMatch, NonLLMStringSimilarity, RougeScore

    predictions, references = pairs(40)
    ours = text.score_without_llm(predictions, references, ["rouge1", "rougeL", "bleu", "string_similarity",
                                                         "exact_match"])
    theirs = {"rouge1": ragas_values(RougeScore(rouge_type="rouge1"), references, predictions),
              "rougeL": ragas_values(RougeScore(rouge_type="rougeL"), references, predictions),
              "bleu": ragas_values(BleuScore(), references, predictions),
              "string_similarity": ragas_values(NonLLMStringSimilarity(), references, predictions),
              "exact_match": ragas_values(ExactMatch(), references, predictions)}
    for name, expected in theirs.items():
        np.testing.assert_allclose(ours[name], expected, rtol=0, atol=1e-12, err_msg=name)
    assert 0 < np.mean(ours["bleu"]) < 1 and len(set(ours["bleu"])) > 5  # the sample exercises BLEU


def test_batched_semantic_similarity_equals_ragas_semantic_similarity(ragas: types.ModuleType,
                                                                     embedder: embeddings.Embedder) -> None:
    from ragas.embeddings import HuggingFaceEmbeddings
    from ragas.metrics.collections import SemanticSimilarity

    predictions = [SENTENCE, "Ashbrook's sluice shuts at a quarter to eight in the evening.", "",
                   "Bananas ripen quickly in warm kitchens.", "The weir at Millford opens at dawn."]
    references = [SENTENCE, SENTENCE, "Anything at all.", SENTENCE, "Millford weir opens at sunrise."]
    ours = text.score_without_llm(predictions, references, ["semantic_similarity"], embedder=embedder)
    reference_metric = SemanticSimilarity(embeddings=HuggingFaceEmbeddings(model=embeddings.default_model_path()))
    theirs = ragas_values(reference_metric, references, predictions)
    np.testing.assert_allclose(ours["semantic_similarity"], theirs, rtol=0, atol=1e-5)
    assert theirs[1] > theirs[3] + 0.3  # a paraphrase beats an unrelated sentence


def test_unknown_metric_and_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'bleurt'.*allowed: rouge1, rouge2"):
        text.score_without_llm(["a"], ["a"], ["bleu", "bleurt"])
    with pytest.raises(ValueError, match=r"predictions=2, references=1"):
        text.score_without_llm(["a", "b"], ["a"], ["bleu"])
    with pytest.raises(ValueError, match=r"'bleu'.*allowed: faithfulness"):
        judge_metrics.score_with_judge(["q"], [["c"]], ["a"], ["r"], model="x", base_url="http://127.0.0.1:9", api_key=None,
                           metrics=["bleu"], repeats=1, timeout_seconds=1)
    with pytest.raises(TypeError, match=r"references\[1\] is NoneType"):
        text.score_without_llm(["a", "b"], ["a", None], ["exact_match"])  # type: ignore[list-item]


def test_aggregate_ignores_nan_and_reports_nan_when_nothing_was_measured() -> None:
    result = text.aggregate({"a": [1.0, math.nan, 0.5], "b": [math.nan, math.nan], "c": []})
    assert result["a"] == pytest.approx(0.75)
    assert math.isnan(result["b"]) and math.isnan(result["c"])


# ------------------------------------------------------------------ paired bootstrap


def test_bootstrap_interval_covers_the_true_difference_about_as_often_as_claimed() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(200):
        baseline = rng.uniform(0, 1, 100)
        candidate = baseline + 0.05 + rng.normal(0, 0.1, 100)  # true mean difference 0.05
        ci = bootstrap.paired_bootstrap(candidate, baseline, metric="rougeL", resamples=500, seed=trial)
        covered += ci.low <= 0.05 <= ci.high
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_separates_a_clear_improvement_from_noise() -> None:
    rng = np.random.default_rng(2)
    baseline = rng.uniform(0, 1, 300)
    better = bootstrap.paired_bootstrap(baseline + 0.1 + rng.normal(0, 0.1, 300), baseline, metric="bleu")
    assert better.excludes_zero and better.low > 0.07 and better.low <= better.mean_difference <= better.high
    assert better.samples == 300 and better.confidence == 0.95
    noise = bootstrap.paired_bootstrap(baseline + rng.normal(0, 0.1, 300), baseline, metric="bleu")
    assert not noise.excludes_zero and noise.low < 0 < noise.high


def test_bootstrap_is_paired() -> None:
    rng = np.random.default_rng(3)
    baseline = rng.uniform(0, 1, 200)  # widely spread per-sample scores
    same = bootstrap.paired_bootstrap(baseline, baseline, metric="x")
    assert (same.mean_difference, same.low, same.high, same.excludes_zero) == (0.0, 0.0, 0.0, False)
    shifted = bootstrap.paired_bootstrap(baseline + 0.01, baseline, metric="x")
    assert shifted.low == pytest.approx(0.01) and shifted.high == pytest.approx(0.01)  # unpaired: ±0.06 wide
    assert shifted.excludes_zero


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0, 1, 50), rng.uniform(0, 1, 50)
    first, again = (bootstrap.paired_bootstrap(a, b, metric="x", seed=11) for _ in range(2))
    assert first == again
    assert bootstrap.paired_bootstrap(a, b, metric="x", seed=12) != first


def test_bootstrap_drops_pairs_with_nan_and_refuses_mismatched_lengths() -> None:
    result = bootstrap.paired_bootstrap([1.0, math.nan, 0.5, 0.7], [0.5, 0.2, math.nan, 0.2], metric="x")
    assert result.samples == 2 and result.mean_difference == pytest.approx(0.5)
    empty = bootstrap.paired_bootstrap([math.nan, 1.0], [0.0, math.nan], metric="x")
    assert empty.samples == 0 and not empty.excludes_zero
    assert all(math.isnan(v) for v in (empty.mean_difference, empty.low, empty.high))
    with pytest.raises(ValueError, match=r"candidate=3, baseline=2"):
        bootstrap.paired_bootstrap([1, 2, 3], [1, 2], metric="x")


# ------------------------------------------------------------------ LLM judge over HTTP


class JudgeServer:
    """An OpenAI-compatible ``/v1/chat/completions`` on loopback for RAGAS's Instructor adapter.

    It answers by the schema the system prompt asks for (Instructor's JSON
    mode names it) and by a marker in the user prompt: ``Q-good`` always
    answers well, ``Q-mixed`` answers context recall 1, then 0, then
    garbage, ``Q-dead`` alternates HTTP 500 and non-JSON text, ``Q-slow``
    sleeps past the client's timeout, ``Q-empty`` finds no statements.

    The handler threads only record what they saw (a failed assert there would
    only drop a connection): the tests assert on ``unexpected``,
    ``slow_client_gone`` and ``slow_overlapped``.
    """

    SCHEMAS = ("StatementGeneratorOutput", "NLIStatementOutput", "AnswerRelevanceOutput", "ContextPrecisionOutput",
               "ContextRecallOutput")

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}
        self.requests: list[dict] = []
        self.unexpected: list[str] = []  # requests this judge has no answer for, and clients that hung up early
        self.slow_client_gone: list[bool] = []  # per Q-slow request: had its client given up when the answer was due?
        self.slow_overlapped: list[bool] = []  # per Q-slow request: was an earlier one's client still waiting?
        self.slow_connections: list[socket.socket] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if server.marker(body) == "Q-slow":
                    server.arrived_slow(self.connection)
                status, content = server.answer(self.path, body)
                if server.marker(body) == "Q-slow":
                    server.record(server.slow_client_gone, _client_hung_up(self.connection))
                payload = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                          "role": "assistant", "content": content}}],
                                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
                data = (payload if status == 200 else '{"error": {"message": "boom"}}').encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    if server.marker(body) != "Q-slow":  # only the timeout test's client hangs up first
                        server.record(server.unexpected, f"client hung up on a {server.marker(body)} request")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def record(self, into: list, value: object) -> None:
        with self.lock:
            into.append(value)

    def arrived_slow(self, connection: socket.socket) -> None:
        with self.lock:
            self.slow_overlapped.append(any(not _client_hung_up(c) for c in self.slow_connections))
            self.slow_connections.append(connection)

    @staticmethod
    def marker(body: dict) -> str | None:
        prompt = body["messages"][-1]["content"]
        return next((k for k in ("Q-good", "Q-mixed", "Q-dead", "Q-slow", "Q-empty") if k in prompt), None)

    def answer(self, path: str, body: dict) -> tuple[int, str]:
        self.record(self.requests, body)
        if path != "/v1/chat/completions" or body.get("response_format") != {"type": "json_object"}:
            self.record(self.unexpected, f"POST {path} with response_format {body.get('response_format')!r}")
            return 400, ""
        system = next(msg["content"] for msg in body["messages"] if msg["role"] == "system")
        prompt = body["messages"][-1]["content"]
        schema = json.loads(system[system.index("{"):system.rindex("}") + 1])["title"]
        marker = self.marker(body)
        if marker is None:  # e.g. an Instructor re-ask, which ends with its own message
            return 400, ""
        if schema not in self.SCHEMAS:
            self.record(self.unexpected, f"a judge prompt for schema {schema}")
            return 400, ""
        with self.lock:
            turn = self.calls[schema, marker] = self.calls.get((schema, marker), 0) + 1
        if marker == "Q-slow":
            time.sleep(1.5)
        if marker == "Q-dead":
            return (500, "") if turn % 2 else (200, "I think the answer is yes!")
        if marker == "Q-mixed" and schema == "ContextRecallOutput":
            return 200, ("garbage{" if turn == 3 else self.good(schema, prompt, marker, attributed=int(turn == 1)))
        return 200, self.good(schema, prompt, marker)

    @staticmethod
    def good(schema: str, prompt: str, marker: str, attributed: int = 1) -> str:
        statements = [f"The sluice closes at 19:45 ({marker}).", f"It opens at 6 ({marker})."]
        if schema == "StatementGeneratorOutput":  # the marker travels on into the NLI prompt
            return json.dumps({"statements": [] if marker == "Q-empty" else statements})
        if schema == "NLIStatementOutput":  # one of the two statements is supported
            return json.dumps({"statements": [
                {"statement": statements[0], "reason": "in context", "verdict": 1},
                {"statement": statements[1], "reason": "not in context", "verdict": 0}]})
        if schema == "AnswerRelevanceOutput":
            return json.dumps({"question": f"When does the Ashbrook sluice close? {marker}", "noncommittal": 0})
        if schema == "ContextPrecisionOutput":  # the marker word sits in the second context only
            return json.dumps({"reason": "r", "verdict": int("ZZUSEFUL" in prompt)})
        return json.dumps({"classifications": [{"statement": "s", "reason": "r", "attributed": attributed}]})

    def wait_for_slow_answers(self, count: int, timeout: float = 10.0) -> list[bool]:
        """Whether each Q-slow request's client was gone, once ``count`` of them were due."""
        deadline = time.monotonic() + timeout
        while len(self.slow_client_gone) < count:
            due = len(self.slow_client_gone)
            assert time.monotonic() < deadline, f"only {due} of {count} Q-slow answers were due in {timeout} s"
            time.sleep(0.05)
        return list(self.slow_client_gone)


def _client_hung_up(connection: socket.socket) -> bool:
    """Whether the peer closed the connection (it reads as end-of-file without a byte consumed)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def judge_server() -> Iterator[JudgeServer]:
    server = JudgeServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    assert server.unexpected == [], "the judge was asked what no test expects"


def judge(server: JudgeServer, markers: list[str], metrics: list[str], repeats: int,
          timeout_seconds: float = 5.0, embedder: embeddings.Embedder | None = None) -> judge_metrics.JudgeScores:
    count = len(markers)
    return judge_metrics.score_with_judge(
        [f"When does the Ashbrook sluice close? {k}" for k in markers],
        [["The river is wide.", "ZZUSEFUL: the sluice closes at 19:45."]] * count,
        [f"The sluice closes at 19:45. It opens at 6. {k}" for k in markers],
        ["The Ashbrook sluice closes at 19:45."] * count,
        model="judge-model", base_url=server.url, api_key=None, metrics=metrics, repeats=repeats,
        timeout_seconds=timeout_seconds, embedder=embedder)


def test_judge_metrics_through_an_openai_compatible_endpoint(judge_server: JudgeServer,
                                                             embedder: embeddings.Embedder) -> None:
    scores = judge(judge_server, ["Q-good", "Q-empty"], list(judge_metrics.JUDGE_METRICS), repeats=1, embedder=embedder)
    assert list(scores) == list(judge_metrics.JUDGE_METRICS)
    assert scores["faithfulness"][0] == 0.5  # 1 of 2 statements supported
    assert math.isnan(scores["faithfulness"][1])  # no statements: RAGAS's NaN, not a failure
    assert scores["answer_relevancy"] == [pytest.approx(1.0, abs=1e-6)] * 2  # generated question == asked question
    assert scores["context_precision"] == [pytest.approx(0.5)] * 2  # useful context ranked second
    assert scores["context_recall"] == [1.0, 1.0]
    assert scores.failed_attempts == dict.fromkeys(judge_metrics.JUDGE_METRICS, 0)
    assert scores.nan_attempts["faithfulness"] == 1 and scores.attempts["answer_relevancy"] == 2
    assert judge_server.requests[0]["model"] == "judge-model"


def test_repeated_judging_averages_and_all_failed_samples_are_nan(judge_server: JudgeServer, caplog) -> None:  # type: ignore[no-untyped-def]
    scores = judge(judge_server, ["Q-good", "Q-mixed", "Q-dead"], ["context_recall"], repeats=3)
    good, mixed, dead = scores["context_recall"]
    assert good == 1.0
    assert mixed == 0.5  # attempts 1.0 and 0.0 averaged; the garbage attempt is left out, not counted as 0
    assert math.isnan(dead)  # every attempt failed: not measured, never 0
    assert scores.attempts == {"context_recall": 9} and scores.failed_attempts == {"context_recall": 4}
    assert any("InternalServerError" in e for e in scores.error_examples["context_recall"])
    assert text.aggregate(scores) == {"context_recall": 0.75}
    assert judge_server.calls["ContextRecallOutput", "Q-dead"] == 3  # one HTTP call per attempt: no hidden retries
    assert len(judge_server.requests) == 9  # nor re-asks after the unparseable answers
    assert "4 of 9 attempts failed" in caplog.text


def test_a_judge_slower_than_the_timeout_is_a_failed_attempt(judge_server: JudgeServer) -> None:
    scores = judge(judge_server, ["Q-slow", "Q-good"], ["context_recall"], repeats=2, timeout_seconds=0.5)
    assert math.isnan(scores["context_recall"][0]) and scores["context_recall"][1] == 1.0
    assert scores.failed_attempts == {"context_recall": 2}
    # what keeps it short: the client gives up at its timeout, not when the judge answers, and the
    # attempts run side by side rather than one after another
    assert judge_server.wait_for_slow_answers(2) == [True, True]
    assert judge_server.slow_overlapped == [False, True]
