"""The lakeFS REST API (``/api/v1``), one module per resource.

Handlers are plain async functions ``(state, request, **path_params)`` over
:class:`~.state.ServerState`; :mod:`..app` routes to them and turns
:mod:`..errors` into lakeFS's error answers.
"""
