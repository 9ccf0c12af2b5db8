"""``python -m sluice.shell.cli``: the ``sluice`` command."""

from sluice.shell.cli.root import main

main()
