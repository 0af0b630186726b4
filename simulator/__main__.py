"""``python -m simulator``: the same as ``python -m simulator.fleet``."""

import sys

from simulator.fleet import main

sys.exit(main())
