"""``python -m memlens ...`` runs the memlens command (useful when its script directory is
not on PATH)."""

from memlens._cli import main

main()
