"""What the data stage says to people: the rejection message a failed batch
raises, and the markdown reports of ingest and incoming runs."""

from __future__ import annotations

from sluice.core.data.batch import IngestResult
from sluice.core.data.validation import ValidationSummary


def rejection_message(result: IngestResult, summary: ValidationSummary, repository: str, main: str) -> str:
    """Which rules broke, for how many rows, and where to look."""
    failed = [f"  - {o.rule}: {o.description} — "
              + (f"{o.unexpected_count} row(s)" if o.level == "row" else f"observed {o.observed}")
              + (f" (check error: {o.error})" if o.error else "") for o in summary.failed_rules]
    url = result.branch_commit.url if result.branch_commit else ""
    return (f"{result.kind} batch {result.batch_id} rejected by its contract (v{summary.contract_version}): "
            f"{'; '.join(summary.reasons)}\nFailed rules:\n" + "\n".join(failed) +
            f"\n{main} is untouched. Inspect branch {result.branch!r} of {repository} ({url}): raw input, "
            "cleaned rows, quarantine, validation report and Data Docs.")


def ingest_report(result: IngestResult, summary: ValidationSummary | None) -> str:
    """An ingest run's markdown: counts, contract result, links, top failures."""
    lines = [f"# Ingest {result.kind} batch `{result.batch_id}`: **{result.decision}**", "", result.message or "", ""]
    lines += [f"- rows read: {result.rows_in}; published: {result.rows_published}; "
              f"quarantined: {result.rows_quarantined}"]
    if result.branch_commit:
        lines.append(f"- branch `{result.branch}` at [`{result.branch_commit.commit_id[:12]}`]"
                     f"({result.branch_commit.url})")
    if result.main_commit:
        lines.append(f"- main at [`{result.main_commit.commit_id[:12]}`]({result.main_commit.url})")
    if summary:
        lines += ["", f"Contract v{summary.contract_version}: {summary.rows_invalid} of {summary.rows_checked} rows "
                      f"invalid ({summary.invalid_fraction:.2%})", ""]
        failed = sorted(summary.failed_rules, key=lambda o: -o.unexpected_count)[:10]
        if failed:
            lines += ["| failing rule | rows | observed |", "|---|---|---|"]
            lines += [f"| {o.description} | {o.unexpected_count} | {'' if o.observed is None else o.observed} |"
                      for o in failed]
    return "\n".join(lines)


def incoming_report(branch: str, commit_id: str, results: dict[str, IngestResult | str], skipped: list[str],
                    kinds: tuple[str, ...]) -> str:
    """An incoming commit's markdown: each data file's outcome (a result, or why it did not reach main)."""
    lines = [f"# Incoming data: `{branch}` @ `{commit_id[:12]}`", ""]
    for path, result in results.items():
        if isinstance(result, IngestResult):
            lines.append(f"- `{path}` ({result.kind}): {result.decision}, {result.rows_published} rows published")
        else:
            lines.append(f"- `{path}`: **did not reach main** — {result}")
    lines += [f"- `{path}`: skipped (not under {', '.join(kinds)}/)" for path in skipped]
    if not results:
        lines.append("- no data files in this commit")
    return "\n".join(lines) + "\n"
