"""``python -m dtpyfw.cli``."""

import sys

from dtpyfw.cli import main

sys.exit(main())
