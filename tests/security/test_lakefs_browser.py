"""The embedded lakeFS server as a logged-in browser meets it (issue 13, items
9, 10 and 11): another site cannot make it commit or upload (cross-origin
writes are 403, JSON endpoints take only application/json), every page and
answer carries nosniff and a CSP, and the web view says 404 for what does not
exist. Clients that are not browsers (no Origin header) keep working."""

from __future__ import annotations

import httpx
import pytest

from tests.security.lakefs_http import basic_token

FOREIGN = "http://evil.example"


def _head(api: httpx.Client, repo_id: str) -> str:
    return api.get(f"/repositories/{repo_id}/branches/main").json()["commit_id"]


def _commit_request(repo_id: str, headers: dict[str, str], content_type: str = "text/plain") -> dict:
    return {"method": "POST", "url": f"/repositories/{repo_id}/branches/main/commits",
            "content": b'{"message": "forged", "allow_empty": true}', "headers": {"Content-Type": content_type, **headers}}


@pytest.mark.parametrize("browser_headers", [
    {"Origin": FOREIGN},
    {"Origin": "null"},  # sandboxed frames and file:// pages
    {"Origin": "http://127.0.0.1:1"},  # another port on the same host is another origin
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
], ids=["foreign-origin", "null-origin", "other-port", "cross-site", "same-site"])
def test_cross_origin_commit_is_403_and_changes_nothing(api, repo_id, browser_headers):
    head = _head(api, repo_id)
    response = api.request(**_commit_request(repo_id, browser_headers))
    assert response.status_code == 403, response.text
    assert "cross-origin request refused" in response.json()["message"]
    assert _head(api, repo_id) == head


def test_cross_origin_multipart_upload_is_403(api, repo_id):
    response = api.post(f"/repositories/{repo_id}/branches/main/objects", params={"path": "planted.txt"},
                        files={"content": ("planted.txt", b"from another site", "text/plain")},
                        headers={"Origin": FOREIGN})
    assert response.status_code == 403
    stat = api.get(f"/repositories/{repo_id}/refs/main/objects/stat", params={"path": "planted.txt"})
    assert stat.status_code == 404


@pytest.mark.parametrize("method", ["DELETE", "PUT"])
def test_cross_origin_deletes_and_resets_are_403(api, repo_id, method):
    url = f"/repositories/{repo_id}" if method == "DELETE" else f"/repositories/{repo_id}/branches/main"
    response = api.request(method, url, headers={"Origin": FOREIGN})
    assert response.status_code == 403
    assert api.get(f"/repositories/{repo_id}").status_code == 200


def test_same_origin_and_non_browser_writes_still_work(lakefs_server, api, repo_id):
    own_origin = {"Origin": lakefs_server.url, "Sec-Fetch-Site": "same-origin"}
    for headers in (own_origin, {}):  # {}: the SDK, curl
        response = api.request(**_commit_request(repo_id, headers, content_type="application/json"))
        assert response.status_code == 201, response.text


def test_cross_origin_reads_are_not_refused(api, repo_id):
    # a cross-site GET cannot change state, and without CORS headers its answer stays unreadable to the page
    assert api.get(f"/repositories/{repo_id}", headers={"Origin": FOREIGN}).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_json_endpoints_take_only_application_json(api, repo_id, content_type):
    head = _head(api, repo_id)
    request = _commit_request(repo_id, {})
    request["headers"] = {"Content-Type": content_type} if content_type else {}
    response = api.request(**request)
    assert response.status_code == 415, response.text
    assert "Content-Type" in response.json()["message"]
    assert _head(api, repo_id) == head


def test_json_with_charset_is_json(api, repo_id):
    response = api.request(**_commit_request(repo_id, {}, content_type="application/json; charset=utf-8"))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ["/", "/repositories/{repo}", "/api/v1/repositories/{repo}", "/api/v1/user"])
def test_every_answer_carries_nosniff_csp_and_no_framing(lakefs_server, repo_id, path):
    auth = {"Authorization": f"Basic {basic_token(lakefs_server)}"}
    for headers in (auth, {}):  # the 401 answers too
        response = httpx.get(lakefs_server.url + path.format(repo=repo_id), headers=headers)
        assert response.headers["x-content-type-options"] == "nosniff"
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"


def test_web_view_pages_run_no_script(lakefs_server, repo_id):
    response = httpx.get(f"{lakefs_server.url}/repositories/{repo_id}",
                         headers={"Authorization": f"Basic {basic_token(lakefs_server)}"})
    policy = response.headers["content-security-policy"]
    assert response.status_code == 200 and "script-src" not in policy and "default-src 'none'" in policy


@pytest.mark.parametrize("page", ["/repositories/no-such-repository", "/repositories/no-such-repository/commits/abc",
                                  "/repositories/{repo}/commits/" + "0" * 64])
def test_web_view_says_404_for_what_does_not_exist(lakefs_server, repo_id, page):
    response = httpx.get(lakefs_server.url + page.format(repo=repo_id),
                         headers={"Authorization": f"Basic {basic_token(lakefs_server)}"})
    assert response.status_code == 404
    assert "not found" in response.text
