"""Watch a canary: promote @challenger or withdraw it, on what live traffic showed.

Under ``promotion.rollout: canary`` the promote flow puts a gated version on trial as @challenger;
serving sends it ``promotion.canary.share`` of the default model's requests. Each run of this flow
(the ``watch-canary`` deployment runs it every few minutes):

1. Reads the trial from the registry: @challenger, @champion, and the challenger's start and share tags
   (a challenger set by hand starts its window now). Nothing is kept in memory between runs.
2. Counts both sides' canary traffic since the start from the serving request log and feedback store
   (``<serving.state_dir>/requests.jsonl`` and ``feedback.db``, or the paths given).
3. Decides with ``decide_canary`` (a plain function): server-error rate, p95 latency, empty answers,
   refusals, answer length, feedback rating and, when ``evaluation.judge.model`` is set, the LLM judge's
   reference-free score of each side's latest answers against the configured bounds.
4. Promote → @champion moves to the challenger (the old one → @previous) and @challenger is removed;
   withdraw → @challenger is removed. Either way the version's tags and the ledger keep the evidence, and
   the serving endpoint (``SLUICE_SERVING_URL``) is asked to reload. Not due yet → nothing moves.
5. Reports both sides side by side with the verdict and every reason.

Under ``promotion.rollout: shadow`` the same flow judges the shadow instead: @challenger answered copies of
the default model's requests in the background (never returned); step 2 pairs each shadow answer with the
champion's answer to the same request (MiniLM semantic similarity, empty answers, failed shadow
generations) and step 3 decides with ``decide_shadow``; steps 4 and 5 are the same.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from sluice.core.config import SluiceConfig
from sluice.core.data.feedback import FEEDBACK_DB
from sluice.core.promotion.aliases import AliasMove
from sluice.core.promotion.canary import CanaryResult, CanaryVerdict, canary_report, decide_canary
from sluice.core.promotion.rollout import CanaryState, trial_evidence
from sluice.core.promotion.shadow import (
    ShadowResult,
    decide_shadow,
    shadow_report,
)
from sluice.core.registry.tracking import TrackingTarget
from sluice.core.request_log import REQUEST_LOG
from tasks.registry import resolve_tracking_target
from tasks.rollout import (
    end_trial,
    finish_promotion,
    measure_shadow_trial,
    measure_trial,
    read_trial,
    report_trial,
)
from tasks.serving import reload_serving


@flow(name="watch-canary", log_prints=True)
def watch_canary(request_log: str | None = None, feedback_db: str | None = None,
                 config: SluiceConfig = SluiceConfig()) -> CanaryResult | ShadowResult:  # noqa: B008 (a form default)
    """Compare @challenger with @champion on live traffic; promote, withdraw, or keep watching."""
    target = resolve_tracking_target(config.tracking)
    shadow = config.promotion.rollout == "shadow"
    kind, result_type = ("shadow", ShadowResult) if shadow else ("canary", CanaryResult)
    state = read_trial(target, config.registry,
                       config.promotion.shadow.sample if shadow else config.promotion.canary.share)
    log_path = request_log or str(config.serving.state_dir / REQUEST_LOG)
    result: CanaryResult | ShadowResult
    if state.challenger is None:
        result = result_type(message=f"no @challenger: no {kind} to watch")
    elif state.challenger == state.champion:
        moves = finish_promotion(target, config.registry, state.challenger)
        result = result_type(message=f"version {state.challenger} is @champion already: @challenger removed",
                             moves=moves)
    elif state.champion is None:
        result = result_type(message=f"@challenger is version {state.challenger} but there is no @champion to "
                                     "compare it with: set @champion, or promote it directly")
    elif shadow:
        result = judge_shadow(target, state, log_path, config)
    else:
        result = judge(target, state, log_path, feedback_db or str(config.serving.state_dir / FEEDBACK_DB), config)
    get_run_logger().info("%s", result.message)
    if isinstance(result, ShadowResult):
        report_trial(shadow_report(config.registry.model_name, result), result.message, key="shadow")
    else:
        report_trial(canary_report(config.registry.model_name, result), result.message)
    return result


def judge(target: TrackingTarget, state: CanaryState, request_log: str, feedback_db: str,
          config: SluiceConfig) -> CanaryResult:
    """Count, decide, and act on the verdict (in enforce mode; dry-run only reports it)."""
    assert state.challenger is not None and state.champion is not None and state.started is not None
    evidence = measure_trial(request_log, feedback_db, state.challenger, state.champion, state.started,
                             config.evaluation.judge, config.promotion.canary.judge_sample)
    verdict = decide_canary(evidence, config.promotion.canary)
    message, moves = act_on(target, verdict, evidence, config)
    return CanaryResult(message=message, verdict=verdict, evidence=evidence, moves=moves)


def judge_shadow(target: TrackingTarget, state: CanaryState, request_log: str, config: SluiceConfig) -> ShadowResult:
    """Pair the shadow answers with the champion's, decide, and act as the canary does."""
    assert state.challenger is not None and state.champion is not None and state.started is not None
    evidence = measure_shadow_trial(request_log, state.challenger, state.champion, state.started,
                                    config.evaluation.judge, config.promotion.shadow.max_judged)
    verdict = decide_shadow(evidence, config.promotion.shadow)
    message, moves = act_on(target, verdict, evidence, config)
    return ShadowResult(message=message, verdict=verdict, evidence=evidence, moves=moves)


def act_on(target: TrackingTarget, verdict: CanaryVerdict, measured: BaseModel,
           config: SluiceConfig) -> tuple[str, list[AliasMove]]:
    """Promote or withdraw as the verdict says, the verdict and ``measured`` kept as the evidence, and have
    serving reload; only report it while the verdict is not due or in dry-run."""
    if verdict.outcome == "watch" or config.promotion.mode == "dry-run":
        return verdict.summary() + (" (dry-run: nothing moved)" if verdict.outcome != "watch" else ""), []
    moves = end_trial(target, config.registry, verdict, trial_evidence(verdict, measured))
    if moves:
        reload_serving(verdict.challenger if verdict.outcome == "promote" else verdict.champion)
    return verdict.summary(), moves
