from sluice.shell.cli import main

main()
