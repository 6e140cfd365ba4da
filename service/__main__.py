"""``python -m service``: the same as ``gradserve serve``."""

import sys

from service.cli import main

sys.exit(main(sys.argv[1:] or ["serve"]))
