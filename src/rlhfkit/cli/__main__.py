"""`python -m rlhfkit.cli ...` is `rlhfkit ...`."""

import sys

from rlhfkit.cli import main

sys.exit(main())
