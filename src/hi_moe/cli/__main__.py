"""`python -m hi_moe.cli`: the `hi-moe` command."""

from hi_moe.cli import main

main()
