"""``python -m node.variants compare ...`` until the main CLI wires the command in."""

from __future__ import annotations

import sys

from node.cli.variants import main

sys.exit(main())
