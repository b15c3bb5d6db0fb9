"""``python -m kcore``: the ``kcore`` command."""

from kcore.cli import main

main()
