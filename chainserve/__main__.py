"""`python -m chainserve` is the `chainserve` command."""

from chainserve.api.cli import main

main()
