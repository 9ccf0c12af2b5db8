"""Listing objects on the embedded lakeFS server's metadata store, in process: common prefixes,
pages, ``after``, trees bigger than one page of rows, and staged changes overlaid on the tree
(tools/mutation.py, scope "lakefs-merge")."""

from __future__ import annotations

from sluice.lakefs_server.metadata.store import MetadataStore
from tests.lakefs.test_store_semantics import _commit, _write, store  # noqa: F401  (fixture)

REPO = "repo"


def test_a_branch_lists_its_tree_and_its_staged_changes_in_path_order(store: MetadataStore) -> None:
    _write(store, "main", b="1", d="2")  # staged on the first, empty commit
    assert [e.path for e in store.iter_entries(REPO, store.resolve(REPO, "main"))] == ["b", "d"]
    _commit(store, "main")
    _write(store, "main", a="3", c="4", e="5", d="changed")
    store.delete_objects(REPO, "main", ["b"])
    entries = list(store.iter_entries(REPO, store.resolve(REPO, "main")))
    assert [(e.path, e.size_bytes) for e in entries] == [("a", 1), ("c", 1), ("d", 7), ("e", 1)]


def _listing(store: MetadataStore, prefix: str = "", after: str = "", delimiter: str = "",
             amount: int = 100) -> tuple[list[str], bool]:
    found, more = store.list_objects(REPO, store.resolve(REPO, "main"), prefix, after, delimiter, amount)
    return [item if isinstance(item, str) else item.path for item in found], more


def test_listing_folds_deeper_paths_into_common_prefixes_and_pages(store: MetadataStore) -> None:
    _write(store, "main", **{"a": "1", "d/y/z": "3", "e/f": "5"})
    _commit(store, "main")  # half committed, half staged: the listing overlays both
    _write(store, "main", **{"d/x": "2", "d/y/w": "4", "g": "6"})
    assert _listing(store) == (["a", "d/x", "d/y/w", "d/y/z", "e/f", "g"], False)
    assert _listing(store, delimiter="/") == (["a", "d/", "e/", "g"], False)
    assert _listing(store, prefix="d/", delimiter="/") == (["d/x", "d/y/"], False)
    assert _listing(store, prefix="d/") == (["d/x", "d/y/w", "d/y/z"], False)
    assert _listing(store, delimiter="/", amount=2) == (["a", "d/"], True)
    assert _listing(store, delimiter="/", after="d/", amount=2) == (["e/", "g"], False)  # past the whole d/
    assert _listing(store, after="d/x", amount=1) == (["d/y/w"], True)
    assert _listing(store, prefix="d/", after="a") == (["d/x", "d/y/w", "d/y/z"], False)  # after before the prefix
    assert _listing(store, delimiter="/", amount=4) == (["a", "d/", "e/", "g"], False)


def test_a_tree_bigger_than_a_page_of_rows_is_read_whole(store: MetadataStore) -> None:
    paths = {f"p/{i:05d}": str(i) for i in range(1050)}  # the store reads trees 1000 rows at a time
    _write(store, "main", **paths)
    head = _commit(store, "main")
    assert [e.path for e in store.iter_entries(REPO, store.resolve(REPO, head.id))] == sorted(paths)  # each once
    assert _listing(store, prefix="p/", after="p/00999", amount=3) == (["p/01000", "p/01001", "p/01002"], True)


def test_a_path_starting_with_the_last_code_point_is_listed(store: MetadataStore) -> None:
    _write(store, "main", **{"a": "1", "\U0010ffffz": "2"})
    assert _listing(store) == (["a", "\U0010ffffz"], False)


def test_a_prefix_that_is_itself_a_path_and_deep_paths_fold_at_their_first_delimiter(store: MetadataStore) -> None:
    _write(store, "main", **{"d": "1", "d/x": "2", "q/r/s": "3", "/top": "4"})
    assert _listing(store, prefix="d") == (["d", "d/x"], False)
    assert _listing(store, delimiter="/") == (["/", "d", "d/", "q/"], False)  # "/top" folds at its first byte


def test_after_equal_to_the_prefix_excludes_the_object_named_by_it(store: MetadataStore) -> None:
    # a client paging through prefix "d" whose last page ended at the object "d" must not get it again
    _write(store, "main", **{"d": "1", "d/x": "2"})
    assert _listing(store, prefix="d", after="d") == (["d/x"], False)
