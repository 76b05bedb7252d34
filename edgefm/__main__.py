"""``python -m edgefm``: the same as the ``edgefm`` command."""

from edgefm.cli import main

raise SystemExit(main())
