"""Exits with status 7 through SystemExit, passing its arguments on stdout."""
import sys

print(" ".join(sys.argv))
sys.exit(7)
