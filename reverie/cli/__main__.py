"""`python -m reverie.cli ...`: the same as the `reverie` command."""

import sys

from reverie.cli import main

sys.exit(main())
