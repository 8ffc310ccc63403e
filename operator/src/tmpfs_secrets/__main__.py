"""`python -m tmpfs_secrets`: the same as the `tmpfs-secrets` console script."""

from tmpfs_secrets.cli import main

raise SystemExit(main())
