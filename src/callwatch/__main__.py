"""`python -m callwatch` runs the CLI."""

import sys

from callwatch.cli import main

sys.exit(main())
