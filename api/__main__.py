"""`python -m api` is the `chainserve` command."""

from api.cli import main

main()
