"""``python -m mixbench`` runs the command line."""

from mixbench.cli.app import main

main()
