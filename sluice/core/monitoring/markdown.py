"""The monitor's markdown report (a Prefect artifact, and an MLflow artifact of the monitoring run): the
figures beside their thresholds, the decision with its reasons, and the prompt lengths of window and
training data as a small text plot (renders anywhere markdown does, no image store needed)."""

from __future__ import annotations

from sluice.core.config.monitoring import MonitoringThresholds
from sluice.core.monitoring.report import LengthHistogram, MonitoringReport

BAR_WIDTH = 30


def _bar(share: float) -> str:
    return "█" * round(share * BAR_WIDTH)


def length_plot(histogram: LengthHistogram) -> list[str]:
    """Two bars per length bin: training (t) and window (w), as shares of their prompts."""
    lines = ["```text", "prompt length (words)   t: training   w: window"]
    for i, (reference, window) in enumerate(zip(histogram.reference, histogram.window, strict=True)):
        span = f"{histogram.edges[i]:>6.1f}–{histogram.edges[i + 1]:<6.1f}"
        lines.append(f"{span} t {_bar(reference):<{BAR_WIDTH}} {reference:>4.0%}")
        lines.append(f"{'':13} w {_bar(window):<{BAR_WIDTH}} {window:>4.0%}")
    return [*lines, "```"]


def _figure(value: float | None, digits: str = ".3f") -> str:
    return "—" if value is None else format(value, digits)


def monitoring_markdown(report: MonitoringReport, reasons: list[str], thresholds: MonitoringThresholds,
                        monitoring_run: str | None = None, event_id: str | None = None) -> str:
    verdict = ("too few requests to tell" if report.too_few_requests else "DRIFT" if reasons else "no drift")
    lines = [f"# Monitoring `{report.model_name}` version {report.version}: {verdict}", "",
             f"- window: {report.window.label()}",
             (f"- requests answered by version {report.version}: {report.requests} (by other versions: "
              f"{report.other_versions}; errors: {report.errors})"),
             f"- training data: data commit `{report.data_commit}` ({report.training_prompts} prompts)"]
    if monitoring_run:
        lines.append(f"- MLflow monitoring run `{monitoring_run}`")
    if event_id:
        lines.append(f"- event `sluice.monitor.drift` id `{event_id}`")
    answers = report.answers
    rows = [("empty answers (share)", _figure(answers.empty_share), f"> {thresholds.empty_share:g}"),
            ("refusals (share)", _figure(answers.refusal_share), f"> {thresholds.refusal_share:g}"),
            ("mean feedback rating", f"{_figure(answers.mean_rating, '.2f')} ({answers.ratings} ratings)",
             f"< {thresholds.min_mean_rating:g} (≥ {thresholds.min_ratings} ratings)"
             if thresholds.min_mean_rating is not None else "reported only")]
    if report.length is not None and report.embedding is not None and report.ood is not None:
        length, embedding, ood = report.length, report.embedding, report.ood
        rows = [("prompt length KS statistic (p)", f"{length.ks_statistic:.3f} ({length.ks_pvalue:.2g})",
                 f"≥ {thresholds.length_ks:g} and p < {thresholds.length_pvalue:g}"),
                ("prompt length PSI", f"{length.psi:.3f}", "reported only"),
                ("mean prompt length, words (training)", f"{length.mean_window:.1f} ({length.mean_reference:.1f})",
                 ""),
                ("mean-embedding cosine distance (p)", f"{embedding.distance:.3f} ({embedding.pvalue:.2g})",
                 f"≥ {thresholds.embedding_distance:g} and p < {thresholds.embedding_pvalue:g}"),
                ("out-of-domain share (training's own)", f"{ood.share:.3f} ({ood.reference_share:.3f})",
                 f"more than {thresholds.ood_share_increase:g} above training's"), *rows]
    lines += ["", "| figure | window | drift when |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in rows]]
    if reasons:
        lines += ["", "**Drift:**", *[f"- {reason}" for reason in reasons]]
    elif report.too_few_requests:
        lines += ["", f"Fewer than {thresholds.min_requests} requests: no drift statistics for this window."]
    if report.histogram is not None:
        lines += ["", *length_plot(report.histogram)]
    return "\n".join(lines) + "\n"


def notification_markdown(model: str, version: str, window: str, reasons: list[str], monitoring_run: str) -> str:
    """The ``notify`` reaction's artifact: what drifted, where the figures are."""
    lines = [f"# Drift: `{model}` version {version}", "", f"- window: {window}",
             f"- MLflow monitoring run `{monitoring_run or '—'}`", "", *[f"- {reason}" for reason in reasons]]
    return "\n".join(lines) + "\n"
