"""``python -m distiller`` is the ``distiller`` command."""

import sys

from distiller.cli.main import main

sys.exit(main())
