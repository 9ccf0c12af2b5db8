"""Credentials and error answers of the embedded server, through the official
SDKs (``lakefs`` and its generated client ``lakefs_sdk``)."""

from __future__ import annotations

import json

import lakefs
import lakefs_sdk
import pytest
from lakefs.exceptions import NotAuthorizedException, NotFoundException


def _raw_api(url: str, username: str | None = None, password: str | None = None) -> lakefs_sdk.ApiClient:
    return lakefs_sdk.ApiClient(lakefs_sdk.Configuration(host=f"{url}/api/v1", username=username, password=password))


def test_wrong_secret_is_401(lakefs_server):
    client = lakefs.Client(host=lakefs_server.url, username=lakefs_server.access_key_id, password="wrong")
    with pytest.raises(NotAuthorizedException):
        list(lakefs.repositories(client=client))


def test_missing_credentials_are_401_with_lakefs_message(lakefs_server):
    api = lakefs_sdk.RepositoriesApi(_raw_api(lakefs_server.url))
    with pytest.raises(lakefs_sdk.ApiException) as err:
        api.list_repositories()
    assert err.value.status == 401
    assert json.loads(err.value.body) == {"message": "error authenticating request"}


def test_unknown_access_key_is_401(lakefs_server):
    api = lakefs_sdk.RepositoriesApi(_raw_api(lakefs_server.url, "AKIAUNKNOWN", lakefs_server.secret_access_key))
    with pytest.raises(lakefs_sdk.ApiException) as err:
        api.list_repositories()
    assert err.value.status == 401


def test_health_check_needs_no_credentials(lakefs_server):
    response = lakefs_sdk.HealthCheckApi(_raw_api(lakefs_server.url)).health_check_with_http_info()
    assert response.status_code == 204


def test_config_describes_a_local_blockstore_without_presigning(lakefs_client):
    config = lakefs_client.sdk_client.config_api.get_config()
    assert config.storage_config.blockstore_type == "local"
    assert config.storage_config.pre_sign_support is False
    assert lakefs_client.version  # the SDK reads it from /config


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda api, repo: api.repositories_api.get_repository("no-such-repo"), "repository not found"),
        (lambda api, repo: api.branches_api.get_branch(repo, "no-such-branch"), "branch not found"),
        (lambda api, repo: api.tags_api.get_tag(repo, "no-such-tag"), "tag not found"),
        (lambda api, repo: api.commits_api.get_commit(repo, "no-such-ref"), "not found"),
        (lambda api, repo: api.refs_api.log_commits(repo, "no-such-ref"), "ref: not found"),
        (lambda api, repo: api.objects_api.stat_object(repo, "main", "no-such-object"), "not found"),
    ],
)
def test_unknown_things_are_404_with_a_message(lakefs_client, repo, call, message):
    with pytest.raises(lakefs_sdk.ApiException) as err:
        call(lakefs_client.sdk_client, repo.id)
    assert err.value.status == 404
    assert json.loads(err.value.body) == {"message": message}


def test_bad_ref_expressions_are_400(lakefs_client, repo):
    with pytest.raises(lakefs_sdk.ApiException) as err:
        lakefs_client.sdk_client.commits_api.get_commit(repo.id, "main~x")
    assert err.value.status == 400
    with pytest.raises(lakefs_sdk.ApiException) as staging_only:
        lakefs_client.sdk_client.commits_api.get_commit(repo.id, "main$")
    assert staging_only.value.status == 400


def test_unknown_endpoint_is_404(lakefs_client):
    with pytest.raises(lakefs_sdk.ApiException) as err:
        lakefs_client.sdk_client.auth_api.list_users()  # a lakeFS API the embedded server does not serve
    assert err.value.status == 404
    assert json.loads(err.value.body) == {"message": "invalid API endpoint"}


def test_upload_to_unknown_repository_is_404(lakefs_client):
    with pytest.raises(NotFoundException):
        lakefs.Repository("no-such-repo", client=lakefs_client).branch("main").object("x").upload(data=b"x")
