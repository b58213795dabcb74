"""`python -m cfai_cli` runs the CLI."""

from cfai_cli.cli.entry import main

main()
