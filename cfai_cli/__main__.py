"""`python -m cfai_cli` runs the CLI."""

from cfai_cli.cli.app import main

main()
