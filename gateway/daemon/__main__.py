"""``python -m gateway.daemon`` = ``rbd-target-gw``."""

import sys

from gateway.daemon import main

sys.exit(main())
