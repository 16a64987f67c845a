"""`python -m gateway.cli ...` is the `loraflow` command (how `up` starts its scheduler child)."""

from gateway.cli.main import main

main()
