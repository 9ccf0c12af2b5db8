"""Object names and the headers objects are served with, on the embedded
lakeFS server (issue 13, items 2, 9 and 11): every name that can be written
can be read back, control characters are refused on write, object content is
always an attachment under nosniff and a sandboxing CSP, and the Basic auth
scheme is case-insensitive."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import lakefs
import pytest

from tests.security.lakefs_http import basic_token

SVG = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(document.cookie)</script></svg>"


def _upload(api: httpx.Client, repo_id: str, path: str, data: bytes, content_type: str | None = None):
    headers = {"Content-Type": content_type} if content_type else {}
    return api.post(f"/repositories/{repo_id}/branches/main/objects", params={"path": path}, content=data,
                    headers=headers)


@pytest.mark.parametrize("path", ["日本語.txt", "data/emoji-🙂.csv", 'quote"and\\slash.txt', "ünïcode.json"])
def test_any_name_that_uploads_reads_back_with_an_rfc5987_file_name(api, repo_id, lakefs_client, path):
    assert _upload(api, repo_id, path, b"payload").status_code == 201
    params = {"path": path}

    got = api.get(f"/repositories/{repo_id}/refs/main/objects", params=params)
    head = api.head(f"/repositories/{repo_id}/refs/main/objects", params=params)

    assert (got.status_code, got.content, head.status_code) == (200, b"payload", 200)
    name = path.rsplit("/", 1)[-1]
    disposition = got.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="')
    assert disposition.isascii()
    assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition
    assert head.headers["content-disposition"] == disposition
    # and the official SDK reads it too
    assert lakefs.Repository(repo_id, client=lakefs_client).ref("main").object(path).reader().read() == b"payload"


@pytest.mark.parametrize("character", ["\x00", "\r", "\n", "\t", "\x1b", "\x7f"])
def test_control_characters_in_a_new_path_are_a_400_naming_the_path(api, repo_id, character):
    path = f"data/a{character}b.txt"
    response = _upload(api, repo_id, path, b"x")
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith("argument path:") and f"U+{ord(character):04X}" in message
    # nothing was written, and the server still answers on this connection
    stat = api.get(f"/repositories/{repo_id}/refs/main/objects/stat", params={"path": path})
    assert stat.status_code == 404


def test_multipart_uploads_refuse_control_characters_too(api, repo_id):
    response = api.post(f"/repositories/{repo_id}/branches/main/objects", params={"path": "x\ny"},
                        files={"content": ("x", b"data", "text/plain")})
    assert response.status_code == 400 and response.json()["message"].startswith("argument path:")


@pytest.mark.parametrize("content_type", ["image/svg+xml", "text/html", "text/plain", "application/json",
                                          "image/png"])
def test_object_content_is_never_served_inline(api, repo_id, content_type):
    assert _upload(api, repo_id, "evil.svg", SVG, content_type).status_code == 201

    response = api.get(f"/repositories/{repo_id}/refs/main/objects", params={"path": "evil.svg"})

    assert response.status_code == 200 and response.content == SVG
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy


def test_a_content_type_no_header_can_carry_is_refused(api, repo_id):
    # multipart part headers are not checked by the HTTP parser: a control character would break every read
    response = api.post(f"/repositories/{repo_id}/branches/main/objects", params={"path": "x.bin"},
                        files={"content": ("x", b"data", "text/plain\x01")})
    assert response.status_code == 400 and "Content-Type" in response.json()["message"]


@pytest.mark.parametrize("scheme", ["Basic", "basic", "BASIC", "bAsIc"])
def test_basic_auth_scheme_is_case_insensitive(lakefs_server, scheme):
    response = httpx.get(f"{lakefs_server.url}/api/v1/user",
                         headers={"Authorization": f"{scheme} {basic_token(lakefs_server)}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("header", ["Bearer {token}", "Basic", "Basicx {token}", "Basic {token}x"])
def test_other_schemes_and_wrong_tokens_stay_401(lakefs_server, header):
    response = httpx.get(f"{lakefs_server.url}/api/v1/user",
                         headers={"Authorization": header.format(token=basic_token(lakefs_server))})
    assert response.status_code == 401
