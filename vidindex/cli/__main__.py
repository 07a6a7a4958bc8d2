"""`python -m vidindex.cli ...` runs the `vidindex` command."""

import sys

from vidindex.cli.main import main

sys.exit(main())
