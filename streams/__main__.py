"""`python -m streams` is the `forewarn` command."""

from streams.cli import main

raise SystemExit(main())
