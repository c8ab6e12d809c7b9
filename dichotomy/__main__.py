"""``python -m dichotomy``: the ``dichotomy`` command."""

import sys

from dichotomy.cli import main

sys.exit(main())
