"""`python -m rlhfkit.cli ...` = `rlhfkit ...` (for a checkout that is not pip-installed)."""

import sys

from rlhfkit.cli import main

sys.exit(main())
