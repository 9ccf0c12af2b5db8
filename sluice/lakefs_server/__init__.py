"""An embedded lakeFS-compatible server: the lakeFS REST API (``/api/v1``) over
a local data directory, for the embedded default and for tests.

Project code never talks to it directly: it goes through the official
``lakefs`` SDK exactly as it would to real lakeFS. lakeFS's OpenAPI spec is the
contract; ``../shared/reference/lakefs-api.md`` lists the calls the SDKs make.
"""
