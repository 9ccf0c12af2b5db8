"""lakeFS, reached only through the official ``lakefs`` SDK and the standard
``LAKECTL_*`` variables, so the same code runs against real lakeFS and the
embedded server."""
