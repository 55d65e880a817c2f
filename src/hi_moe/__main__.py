"""`python -m hi_moe`: the `hi-moe` command."""

from hi_moe.cli import main

main()
