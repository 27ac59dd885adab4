"""``python -m vmatch.cli``: the ``vmatch`` command (:func:`vmatch.cli.main`)."""

import sys

from vmatch.cli import main

sys.exit(main())
