"""`python -m rlhfkit.cli …`: the same as the `rlhfkit` script."""

import sys

from rlhfkit.cli import main

sys.exit(main())
