"""`python -m nfcompress` runs the CLI."""

from nfcompress.cli import main

main()
