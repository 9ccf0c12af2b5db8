"""The application shell: the ``sluice`` command, the local stack behind
``sluice up``, the event bridge (lakeFS webhooks → Prefect events) and the
embedded lakeFS server's process. The top layer: it may import everything."""
