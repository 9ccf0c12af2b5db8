"""Versioned metadata of the embedded lakeFS-compatible server, in SQLite.

The model is lakeFS's (its "graveler"): a repository has commits; a commit
points at a *tree* (lakeFS's metarange: every path → object entry); a branch
points at a commit and owns a *staging* area of uncommitted writes and
deletions (tombstones) that overlays that commit. Trees are content-addressed
(``tree_id`` is the hash of their entries) and shared between commits.

- :mod:`.store`: :class:`~.store.MetadataStore`, the operations the API calls
- :mod:`.records`: what it reads and writes (commits, object entries, ...)
- :mod:`.database`: the SQLite schema and transactions
- :mod:`.trees`: trees and staging areas, row by row
- :mod:`.history`: commit records, ref resolution, log, merge base
- :mod:`.merging`: diffs and the three-way merge, path by path
- :mod:`.prepared`: commits and merges built but not applied yet (pre-hooks
  running), which deletes and resets must outlive and restarts remove

Object bytes are not here: they live in :mod:`..blobs`.
"""
