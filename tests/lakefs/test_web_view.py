"""The embedded server's read-only web view answers at lakeFS's UI paths, so
links in run reports open; it needs the same credentials as the API."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import pytest


def _get(url: str, auth: tuple[str, str] | None):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), err.headers  # case-insensitive lookups


def test_commit_page_shows_message_metadata_and_objects(repo, lakefs_server):
    main = repo.branch("main")
    main.object("datasets/sft/raw/a.jsonl").upload(data=b"{}\n")
    commit = main.commit("Add <demo> data", metadata={"prefect.flow_run_id": "run-123"}).get_commit()
    auth = (lakefs_server.access_key_id, lakefs_server.secret_access_key)

    status, html, _ = _get(f"{lakefs_server.url}/repositories/{repo.id}/commits/{commit.id}", auth)
    assert status == 200
    assert "Add &lt;demo&gt; data" in html  # escaped
    assert "run-123" in html and "datasets/sft/raw/a.jsonl" in html and commit.parents[0][:12] in html

    status, html, _ = _get(f"{lakefs_server.url}/repositories/{repo.id}", auth)
    assert status == 200 and commit.id[:12] in html


@pytest.mark.parametrize("auth", [None, ("AKIAWRONG", "nope")])
def test_web_view_asks_for_credentials(repo, lakefs_server, auth):
    status, _, headers = _get(f"{lakefs_server.url}/repositories/{repo.id}", auth)
    assert status == 401
    assert headers.get("WWW-Authenticate") == 'Basic realm="lakeFS"'


def test_unknown_commit_page_is_a_404_page(repo, lakefs_server):
    auth = (lakefs_server.access_key_id, lakefs_server.secret_access_key)
    status, html, _ = _get(f"{lakefs_server.url}/repositories/{repo.id}/commits/{'0' * 64}", auth)
    assert status == 404 and "not found" in html
