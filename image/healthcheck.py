"""The image's HEALTHCHECK: the node's /healthz answers 200 (stdlib only, no curl in the image)."""

import os
import sys
import urllib.error
import urllib.request

PORT = os.environ.get("MAMMO_NODE_API_PORT", "8000")

try:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except (urllib.error.URLError, OSError):
    sys.exit(1)
