"""``python -m pipelines.lineage``: what made a pushed version (see ``store.main``)."""

import sys

from pipelines.lineage.store import main

sys.exit(main())
