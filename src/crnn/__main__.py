"""``python -m crnn``: the same as the ``crnn`` command (see :mod:`crnn.cli`)."""

import sys

from crnn.cli import main

sys.exit(main())
