"""Live traffic into the gate: sampled prompts of ``sluice serve`` with the answers users rated well become
an ``eval`` batch on ``main``, so the next candidate is scored on real traffic too.

1. Sample the request log's answered requests (``<serving.state_dir>/requests.jsonl``, PII redacted by the
   server); read each prompt through ``evaluation.prompt_template`` into question and passages.
2. Take the reference from the feedback store (``feedback.db``): a client's preferred answer, else an answer
   rated at least ``good_rating``. Prompts without passages or without a reference are left out and counted:
   the eval contract and the gate's metrics need both (see :mod:`sluice.core.data.live_eval`).
3. Ingest the rows as ``eval`` data through write–audit–publish: a branch, the eval contract (which also keeps
   questions that training data holds out), merged into main only if valid. Questions already in main's eval
   data are left out; fewer rows than the contract's minimum wait for the next run.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.ingest import ingest
from sluice.core.config import SluiceConfig
from sluice.core.data.feedback import FEEDBACK_DB
from sluice.core.data.live_eval import LiveEvalExport, LiveEvalRows
from sluice.core.request_log import REQUEST_LOG
from tasks.ingest import load_kind_contract
from tasks.lakefs import read_published_values, resolve_commit
from tasks.live_eval import collect_live_eval_rows, report_live_eval_export, write_live_eval_file



@flow(name="export-live-eval", log_prints=True)
def export_live_eval(request_log: str | None = None, feedback_db: str | None = None, sample_rate: float = 0.1,
                     max_rows: int = 500, good_rating: int = 4,
                     config: SluiceConfig = SluiceConfig()) -> LiveEvalExport:  # noqa: B008 (a form default)
    """Commit a sample of live traffic, referenced by feedback, to lakeFS as eval data.

    Args:
        request_log: The serving request log (empty: <serving.state_dir>/requests.jsonl).
        feedback_db: The serving feedback store (empty: <serving.state_dir>/feedback.db).
        sample_rate: Share of answered requests drawn (a stable hash of the response id).
        max_rows: Most eval rows in one batch.
        good_rating: Lowest rating (1-5) that makes a served answer a reference.
        config: Every setting; evaluation.prompt_template says how prompts hold their passages.
    """
    if not 0 < sample_rate <= 1 or max_rows < 1 or not 1 <= good_rating <= 5:
        raise ValueError(f"sample_rate must be in (0, 1], max_rows ≥ 1 and good_rating in 1..5; got "
                         f"{sample_rate}, {max_rows}, {good_rating}")
    state, lake = config.serving.state_dir, config.lakefs
    main = resolve_commit(lake.repository, lake.default_branch)
    published = read_published_values(lake.repository, main.commit_id, config.data.datasets_prefix, ["eval"],
                                      "overlap_key")  # questions main holds already are left out
    drawn = collect_live_eval_rows(request_log or str(state / REQUEST_LOG), feedback_db or str(state / FEEDBACK_DB),
                                   sample_rate, max_rows, good_rating, config.evaluation.prompt_template,
                                   config.evaluation.context_separator, published)
    rows = load_kind_contract("eval", config.contracts).dataset.rows
    needed = rows.min if rows and rows.min else 1
    if len(drawn.rows) < needed:
        result = LiveEvalExport(sampled=drawn.sampled, rows=len(drawn.rows), message=(
            f"{summary(drawn)}; the eval contract needs at least {needed} rows: waiting for more"))
    else:
        source = write_live_eval_file(drawn.rows, str(config.data.work_dir / "live-eval"))
        ingested = ingest(source=source, kind="eval", source_name="serving-traffic", config=config)
        commit = ingested.main_commit.commit_id if ingested.main_commit else None
        result = LiveEvalExport(sampled=drawn.sampled, rows=len(drawn.rows), ingest=ingested, message=(
            f"{summary(drawn)}: {ingested.decision}"
            + (f", in lakefs://{config.lakefs.repository}/{commit}" if commit else "")))
    get_run_logger().info(result.message)
    report_live_eval_export(result)
    return result


def summary(drawn: LiveEvalRows) -> str:
    return (f"{len(drawn.rows)} eval row(s) from {drawn.sampled} sampled request(s) (left out: "
            f"{drawn.no_contexts} without the eval template's passages, {drawn.no_reference} without a "
            f"well-rated or preferred answer, {drawn.duplicates} repeated questions, {drawn.already_published} "
            "already in main's eval data)")
