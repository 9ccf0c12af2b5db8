"""The ``sluice`` command (typer), one module per group of commands:

* :mod:`.root` — the app and its groups: the whole command tree, in the order
  ``sluice --help`` lists it;
* :mod:`.options` — the options many commands share, and the configuration
  they resolve to;
* :mod:`.config_commands` — ``config show``, ``config check``;
* :mod:`.data_commands` — data into the lake: ``demo-data``, ``ingest``,
  ``feedback export``;
* :mod:`.model_commands` — ``model init-tiny``, ``train``, ``demo``,
  ``pipeline``, ``rollback``, ``registry history``;
* :mod:`.service_commands` — the services in the foreground: ``lakefs serve``,
  ``serve``, ``bridge serve`` / ``reconcile`` / ``install-action``;
* :mod:`.stack_commands` — the local stack: ``up``, ``status``, ``down``.

Heavy imports live inside each command so that ``sluice --help`` answers at once.
"""

from sluice.shell.cli.root import app, main

__all__ = ["app", "main"]
