"""Request bodies and values that used to cost the embedded lakeFS server
memory or answer 500 (issue 13, item 6): JSON bodies are capped and refused
while they stream in, nesting is bounded, commit dates are range-checked —
each a 4xx whose message names what was wrong. Object uploads are not JSON
and keep streaming at any size."""

from __future__ import annotations

import pytest

from sluice.lakefs_server.api.commits import MAX_COMMIT_DATE
from sluice.lakefs_server.api.conventions import MAX_JSON_BODY_BYTES, MAX_JSON_DEPTH
from tests.security.lakefs_http import post_until_answered

OFFERED_BYTES = 150 << 20  # what the audit sent to /commits
# Loopback socket buffers hold a few MB more than the server has read when its refusal arrives.
CONSUMED_AT_MOST = MAX_JSON_BODY_BYTES + (12 << 20)


@pytest.mark.parametrize("content_length", [False, True], ids=["chunked", "declared-length"])
def test_oversized_json_body_is_refused_while_it_streams(lakefs_server, repo_id, content_length):
    answer = post_until_answered(lakefs_server, f"/repositories/{repo_id}/branches/main/commits", OFFERED_BYTES,
                                 content_length=content_length)
    assert answer.status == 413
    assert "request body" in answer.body["message"] and str(MAX_JSON_BODY_BYTES) in answer.body["message"]
    # Answered long before the client got to send it all: the server never held the body.
    assert answer.sent_before_answer < CONSUMED_AT_MOST, answer.sent_before_answer


def test_the_server_still_answers_after_an_oversized_body(lakefs_server, api, repo_id):
    post_until_answered(lakefs_server, f"/repositories/{repo_id}/branches/main/commits", OFFERED_BYTES,
                        content_length=False)
    response = api.post(f"/repositories/{repo_id}/branches/main/commits",
                        json={"message": "after the attack", "allow_empty": True})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("depth", [100_000, MAX_JSON_DEPTH + 1])
def test_deeply_nested_json_is_a_400(api, repo_id, depth):
    body = '{"message": "m", "metadata": {"k": ' + "[" * depth + "]" * depth + "}}"
    response = api.post(f"/repositories/{repo_id}/branches/main/commits", content=body,
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert f"request body has an error: JSON nested deeper than {MAX_JSON_DEPTH} levels" in response.json()["message"]


@pytest.mark.parametrize("date", [10**30, -(10**12), -1, MAX_COMMIT_DATE + 1])
def test_commit_date_out_of_range_is_a_400_naming_the_field(api, repo_id, date):
    response = api.post(f"/repositories/{repo_id}/branches/main/commits",
                        json={"message": "m", "date": date, "allow_empty": True})
    assert response.status_code == 400, response.text
    assert '"/date"' in response.json()["message"]


@pytest.mark.parametrize("date", [0, 1_700_000_000, MAX_COMMIT_DATE])
def test_commit_dates_in_range_are_kept(api, repo_id, date):
    response = api.post(f"/repositories/{repo_id}/branches/main/commits",
                        json={"message": "m", "date": date, "allow_empty": True})
    assert response.status_code == 201, response.text
    assert response.json()["creation_date"] == date
    assert api.get(f"/repositories/{repo_id}/refs/main/commits").status_code == 200


def test_a_log_since_year_one_is_a_400_not_a_crash(api, repo_id):
    response = api.get(f"/repositories/{repo_id}/refs/main/commits", params={"since": "0001-01-01T00:00:00"})
    assert response.status_code == 400 and '"since"' in response.json()["message"]


def test_object_uploads_are_not_capped_like_json(api, repo_id):
    data = b"x" * (MAX_JSON_BODY_BYTES + (2 << 20))
    response = api.post(f"/repositories/{repo_id}/branches/main/objects", params={"path": "big.bin"},
                        content=iter([data[: 1 << 20], data[1 << 20:]]))
    assert response.status_code == 201, response.text
    assert response.json()["size_bytes"] == len(data)
