"""`python -m tunnelops`: the tunnelops command."""

from tunnelops.program import main

main()
