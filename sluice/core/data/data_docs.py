"""Great Expectations Data Docs that open without a network.

GX's pages load bootstrap, font-awesome, jQuery and friends from CDNs, a
logo from S3, and fill the index tables with JavaScript. Data lakes are read
from air-gapped machines too, so :func:`make_offline` rewrites a rendered site:
GX's own packaged images and styles are copied in, every script and remote
stylesheet is removed, the index tables are turned into static HTML, and a
small local stylesheet (with text stand-ins for the status icons) replaces
the CDN ones. :func:`remote_asset_references` checks the result.
"""

from __future__ import annotations

import ast
import html
import os
import re
import shutil
from pathlib import Path

_REMOTE = r"(?:https?:)?//"
_OFFLINE_CSS = """/* Sluicegate: local stand-in for the CDN stylesheets GX Data Docs use */
body{font-family:system-ui,sans-serif;margin:0;color:#212529;font-size:14px;line-height:1.45}
a{color:#0056b3}
nav.navbar{display:flex;align-items:center;padding:4px 16px;border-bottom:1px solid #dee2e6}
.navbar img{height:36px!important}
.breadcrumb{display:flex;list-style:none;margin:0 0 0 12px;padding:4px 8px;background:#f8f9fa}
.breadcrumb-item+.breadcrumb-item::before{content:"/";padding:0 6px;color:#6c757d}
.container-fluid{padding:8px 16px}
.row{display:flex;flex-wrap:wrap;margin:0}
.col-md-2,.col-lg-2{flex:0 0 200px;max-width:220px;padding-right:12px}
.col-md-10,.col-lg-10{flex:1 1 600px;min-width:0}
.col-6{flex:0 0 50%;max-width:50%}.col-12{flex:0 0 100%}
.card{border:1px solid #dee2e6;border-radius:4px;margin-bottom:12px}
.card-header{background:#f7f7f7;padding:6px 8px;border-bottom:1px solid #dee2e6}.card-body{padding:8px}
.nav{list-style:none;padding-left:0}.nav-link{display:block;padding:2px 4px}
.alert{padding:6px 10px;border-radius:4px;margin:8px 0}.alert-secondary{background:#e2e3e5}
table{border-collapse:collapse;margin:6px 0;max-width:100%}
th,td{border:1px solid #dee2e6;padding:4px 8px;vertical-align:top;text-align:left}
thead th{background:#f1f3f5}
.text-danger{color:#c82333}.text-success{color:#218838}.text-info{color:#117a8b}
.fas,.fa{font-style:normal}
.fa-check-circle::before{content:"\\2714";font-weight:bold}
.fa-times::before{content:"\\2716";font-weight:bold}
.fa-question-circle::before{content:"?";font-weight:bold}
.fa-exclamation-triangle::before{content:"\\26A0"}
.collapse,.fade,.tab-pane{display:block;opacity:1}
.modal,.ge-walkthrough-modal,.btn-group-toggle{display:none}
.cooltip .top{display:none}
"""


def _remove_element(text: str, start: int, tag: str = "div") -> str:
    """Remove the (possibly nested) ``<tag>…</tag>`` that starts at ``start``."""
    depth = 0
    for match in re.finditer(rf"<(/?){tag}\b[^>]*>", text[start:], re.I):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            return text[:start] + text[start + match.end():]
    return text


def _static_table(table_id: str, columns: list[dict], rows: list[dict]) -> str:
    """A table GX builds in JavaScript (bootstrap-table), as plain HTML."""
    if rows and "_run_time_sort" in rows[0]:
        rows = sorted(rows, key=lambda r: r.get("_run_time_sort") or 0, reverse=True)
    linked = any("_table_row_link_path" in r for r in rows)
    head = "".join(f"<th>{html.escape(str(c.get('title', c.get('field', ''))))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            name = column.get("field")
            if name == "validation_success" and "_validation_success_text" in row:
                passed = row["_validation_success_text"].lower().startswith("succ")
                cells.append(f'<td class="{"text-success" if passed else "text-danger"}">'
                             f'{"✔" if passed else "✖"} {html.escape(row["_validation_success_text"])}</td>')
            elif f"_{name}_sort" in row and "cooltip" in str(row.get(name, "")):
                cells.append(f"<td>{html.escape(str(row[f'_{name}_sort']))}</td>")
            else:
                cells.append(f"<td>{row.get(name, '')}</td>")  # GX's own HTML fragment (links)
        if linked:
            link = html.escape(row.get("_table_row_link_path", ""), quote=True)
            cells.append(f'<td><a href="{link}">open</a></td>' if link else "<td></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(columns) + linked}">(none)</td></tr>')
    return (f'<table id="{html.escape(table_id, quote=True)}"><thead><tr>{head}'
            f'{"<th>Report</th>" if linked else ""}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def _index_tables_to_static(text: str) -> str:
    """Index pages keep their table data inside ``<script>`` blocks; render it
    as static tables before the scripts go."""
    for match in list(re.finditer(r"<script\b[^>]*>(.*?)</script\s*>", text, re.S | re.I)):
        script = match.group(1)
        table_id = re.search(r"\$\(\s*'#([^']+)'\s*\)\.bootstrapTable\(", script)
        columns = re.search(r"^\s*columns:\s*(.*?),\s*$", script, re.M)
        data = re.search(r"^\s*data:\s*(.*?),\s*$", script, re.M)
        if not (table_id and columns and data):
            continue
        try:
            parsed_columns, parsed_rows = ast.literal_eval(columns.group(1)), ast.literal_eval(data.group(1))
        except (ValueError, SyntaxError):
            continue  # leave a table GX changed shape of: the page still reads, without that table
        empty = re.compile(rf'<table\b[^>]*\bid="{re.escape(table_id.group(1))}"[^>]*>\s*</table>', re.S)
        text = empty.sub(lambda _: _static_table(table_id.group(1), parsed_columns, parsed_rows), text, count=1)
    return text


def make_offline(docs_dir: Path) -> int:
    """Rewrite every page under ``docs_dir`` to need nothing from the network.
    Returns the number of pages rewritten."""
    import great_expectations

    static = docs_dir / "static"
    packaged = Path(great_expectations.__file__).parent / "render" / "view" / "static"
    (static / "offline").mkdir(parents=True, exist_ok=True)
    (static / "offline" / "offline.css").write_text(_OFFLINE_CSS, encoding="utf-8")
    local_images = {p.name for p in (packaged / "images").iterdir()} if (packaged / "images").is_dir() else set()

    pages = sorted(docs_dir.rglob("*.html"))
    for page in pages:
        to_static = os.path.relpath(static, page.parent).replace(os.sep, "/")
        text = _index_tables_to_static(page.read_text(encoding="utf-8"))
        text = re.sub(r"<script\b[^>]*>.*?</script\s*>", "", text, flags=re.S | re.I)
        text = re.sub(rf"<link\b[^>]*\bhref\s*=\s*[\"']{_REMOTE}[^\"']*[\"'][^>]*>", "", text, flags=re.I)

        def local_image(match: re.Match[str], prefix: str = to_static) -> str:
            tag, url = match.group(0), match.group(1)
            name = url.split("?")[0].rsplit("/", 1)[-1]
            if name in local_images:
                return tag.replace(url, f"{prefix}/images/{name}")
            alt = re.search(r'\balt\s*=\s*"([^"]*)"', tag)
            return html.escape(alt.group(1)) if alt else ""

        text = re.sub(rf"<img\b[^>]*?\bsrc\s*=\s*\"({_REMOTE}[^\"]*)\"[^>]*>", local_image, text, flags=re.I | re.S)
        text = re.sub(rf"url\(\s*['\"]?{_REMOTE}[^)'\"]*['\"]?\s*\)", "none", text, flags=re.I)
        text = re.sub(r"<footer\b.*?</footer\s*>", "", text, flags=re.S | re.I)
        actions = text.find("<strong>Actions</strong>")  # the JavaScript-only filter buttons
        if actions != -1 and (card := text.rfind('<div class="card mb-3">', 0, actions)) != -1:
            text = _remove_element(text, card)
        text = re.sub(r"<button\b[^>]*\bonclick=[^>]*>.*?</button\s*>", "", text, flags=re.S | re.I)
        text = re.sub(rf"<a\b[^>]*\bhref\s*=\s*\"{_REMOTE}[^\"]*\"[^>]*>(.*?)</a\s*>", r"\1", text,
                      flags=re.S | re.I)
        text = text.replace("</head>", f'<link rel="stylesheet" href="{to_static}/offline/offline.css"/></head>', 1)
        page.write_text(text, encoding="utf-8")
    _copy_referenced_assets(pages, static, packaged)
    return len(pages)


def _copy_referenced_assets(pages: list[Path], static: Path, packaged: Path) -> None:
    """Keep only the static files the pages use. GX's site builder copies its
    whole static folder (~4 MB of fonts and images) into every site; a batch
    report needs an icon, a logo and our stylesheet."""
    referenced = {"offline/offline.css"}
    for page in pages:
        referenced.update(re.findall(r"static/([\w./-]+\.\w+)", page.read_text(encoding="utf-8")))
    for path in sorted(static.rglob("*"), reverse=True):
        relative = path.relative_to(static).as_posix()
        if path.is_file() and relative not in referenced:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for relative in sorted(referenced):
        target, source = static / relative, packaged / relative
        if not target.exists() and source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        if target.suffix == ".css" and target.exists():
            css = target.read_text(encoding="utf-8")
            target.write_text(re.sub(rf"url\(\s*['\"]?{_REMOTE}[^)'\"]*['\"]?\s*\)", "none", css, flags=re.I),
                              encoding="utf-8")


def remote_asset_references(docs_dir: Path) -> list[str]:
    """Every script, stylesheet, image or CSS url() that would be fetched from
    another host (empty when the site is offline-ready)."""
    found = []
    asset = re.compile(rf"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*[\"']{_REMOTE}[^\"']*",
                       re.I)
    css_url = re.compile(rf"url\(\s*['\"]?{_REMOTE}|@import\s+['\"]?{_REMOTE}", re.I)
    for path in sorted(docs_dir.rglob("*")):
        if path.suffix not in (".html", ".css"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(docs_dir)}: {m.group(0)[:120]}" for m in asset.finditer(text)]
        found += [f"{path.relative_to(docs_dir)}: {m.group(0)}" for m in css_url.finditer(text)]
    return found
