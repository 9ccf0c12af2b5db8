"""lakeFS actions on the embedded server: action files under
``_lakefs_actions/`` call webhooks with lakeFS's payload; a failing pre-*
hook aborts the operation; post-* hooks never do."""

from __future__ import annotations

import time

import pytest
import yaml
from lakefs.exceptions import ServerException

from tests.lakefs.webhook_listener import WebhookListener


@pytest.fixture
def listener():
    server = WebhookListener()
    yield server
    server.close()


def _action(url: str, events: dict, name: str = "notify") -> bytes:
    """An action file as a user would write it; ``events`` maps event → spec."""
    return yaml.safe_dump({
        "name": name,
        "on": events,
        "hooks": [{
            "id": "call_listener",
            "type": "webhook",
            "properties": {
                "url": f"{url}/lakefs",
                "timeout": "5s",
                "headers": {"X-Token": "{{ ENV.LAKEFSACTION_TEST_TOKEN }}", "X-Not-Exposed": "{{ ENV.HOME }}"},
                "query_params": {"source": "lakefs"},
            },
        }],
    }).encode()


def _install(repo, action: bytes, name: str = "notify.yaml") -> None:
    main = repo.branch("main")
    main.object(f"_lakefs_actions/{name}").upload(data=action)
    main.commit(f"install action {name}")


def test_post_merge_webhook_carries_lakefs_payload(repo, listener):
    _install(repo, _action(listener.url, {"post-merge": {"branches": ["main"]}}))
    feature = repo.branch("feature").create("main")
    feature.object("data/new.parquet").upload(data=b"rows")
    feature.commit("new data", metadata={"rows": "1"})
    merge_id = feature.merge_into(repo.branch("main"), metadata={"contract": "v1"})

    (call,) = listener.wait_for("post-merge")
    body = call.body
    assert body["repository_id"] == repo.id
    assert body["branch_id"] == "main"
    assert body["commit_id"] == merge_id
    assert body["source_ref"] == merge_id  # lakeFS: the merge commit, not the source branch
    assert body["merge_source"] == "feature"
    assert body["action_name"] == "notify" and body["hook_id"] == "call_listener"
    assert body["commit_metadata"]["contract"] == "v1"
    assert body["committer"] == "admin" and body["event_time"].endswith("Z")
    assert call.path == "/lakefs?source=lakefs"
    assert call.headers["x-token"] == "token-from-the-server-environment"
    assert call.headers["x-not-exposed"] == ""  # only LAKEFSACTION_* variables are readable


def test_branch_filters_decide_which_merges_fire(repo, listener):
    _install(repo, _action(listener.url, {"post-commit": {"branches": ["release-*"]}}))
    repo.branch("dev").create("main").commit("on dev", allow_empty=True)
    release = repo.branch("release-1").create("main")
    commit = release.commit("on release", allow_empty=True).get_commit()
    (call,) = listener.wait_for("post-commit")
    assert call.body["branch_id"] == "release-1"
    assert call.body["commit_id"] == call.body["source_ref"] == commit.id


def test_failing_pre_commit_hook_aborts_the_commit(repo, listener):
    listener.status = 500
    main = repo.branch("main")
    head = main.head.id
    # pre-commit reads actions from the branch, uncommitted files included (as lakeFS)
    main.object("_lakefs_actions/gate.yaml").upload(data=_action(listener.url, {"pre-commit": None}))
    main.object("data.csv").upload(data=b"a\n1\n")
    with pytest.raises(ServerException) as err:
        main.commit("blocked")
    assert err.value.status_code == 412
    assert "pre-commit hook aborted" in err.value.body["message"]
    assert "webhook call_listener failed" in err.value.body["message"]  # the status code only in the server log
    assert main.head.id == head
    assert {c.path for c in main.uncommitted()} == {"_lakefs_actions/gate.yaml", "data.csv"}

    listener.status = 200
    assert main.commit("allowed").get_commit().parents == [head]
    (first, second) = listener.wait_for("pre-commit", 2)
    assert first.body["branch_id"] == first.body["source_ref"] == "main"
    assert "commit_id" not in first.body  # lakeFS omits it before the commit exists


def test_failing_pre_merge_hook_leaves_the_destination_alone(repo, listener):
    listener.status = 403
    feature = repo.branch("feature").create("main")
    feature.object("_lakefs_actions/gate.yaml").upload(data=_action(listener.url, {"pre-merge": {"branches": ["main"]}}))
    feature.object("x").upload(data=b"x")
    source = feature.commit("feature").get_commit()
    main_head = repo.branch("main").head.id
    with pytest.raises(ServerException) as err:
        feature.merge_into(repo.branch("main"))
    assert err.value.status_code == 412
    assert err.value.body["message"].startswith("update branch main: pre-merge hook aborted")
    assert repo.branch("main").head.id == main_head
    (call,) = listener.wait_for("pre-merge")
    assert call.body["source_ref"] == source.id  # pre-merge: the source commit id


def test_failing_post_hook_does_not_fail_the_operation(repo, listener):
    listener.status = 500
    _install(repo, _action(listener.url, {"post-commit": None}))
    commit = repo.branch("main").commit("still committed", allow_empty=True).get_commit()
    listener.wait_for("post-commit", 2)  # the install commit and this one
    assert repo.branch("main").head.id == commit.id


def test_action_runs_are_recorded(repo, listener, lakefs_client):
    listener.status = 500
    _install(repo, _action(listener.url, {"post-commit": None}))
    listener.wait_for("post-commit")
    # post hooks run in the background: the run is recorded once the hook call returns
    deadline = time.monotonic() + 10
    while not (runs := lakefs_client.sdk_client.actions_api.list_repository_runs(repo.id).results):
        assert time.monotonic() < deadline, "no action run recorded within 10 s"
        time.sleep(0.05)
    assert runs[0].event_type == "post-commit" and runs[0].status == "failed"
    hooks = lakefs_client.sdk_client.actions_api.list_run_hooks(repo.id, runs[0].run_id).results
    assert [(h.hook_id, h.status) for h in hooks] == [("call_listener", "failed")]


def test_an_invalid_action_file_fails_pre_hooks_with_its_name(repo):
    main = repo.branch("main")
    main.object("_lakefs_actions/broken.yaml").upload(data=b"name: broken\non:\n  pre-commit:\nhooks: []\n")
    with pytest.raises(ServerException) as err:
        main.commit("with a broken action")
    assert err.value.status_code == 500
    assert "_lakefs_actions/broken.yaml" in err.value.body["message"]
    assert "hooks" in err.value.body["message"]
