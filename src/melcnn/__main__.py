"""``python -m melcnn``."""

import sys

from .cli import main

sys.exit(main())
