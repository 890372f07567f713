"""``python -m budgetguard ...`` runs the command-line interface."""

import sys

from budgetguard._cli import main

sys.exit(main())
