"""``python -m nnsqueeze`` runs the command line."""

import sys

from nnsqueeze.cli import main

sys.exit(main())
