"""`python -m callwatch` runs the CLI."""

import sys

from callwatch.cli.main import main

sys.exit(main())
