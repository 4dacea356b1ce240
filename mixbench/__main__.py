"""``python -m mixbench`` runs the command line."""

from mixbench.cli import main

main()
