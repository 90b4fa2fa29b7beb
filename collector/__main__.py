"""``python -m collector``: the same as the ``sct`` command."""

import sys

from collector.cli import main

sys.exit(main())
