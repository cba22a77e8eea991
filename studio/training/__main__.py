"""``python -m studio.training <run dir>/config.yaml``: one training job (see ``studio.training.job``)."""

import sys

from studio.training.job import main

sys.exit(main())
