"""`python3 -m tmpfs_secrets.agent`, for images without the console script."""

import sys

from tmpfs_secrets.agent.main import entry

sys.exit(entry())
