"""``python3 -m dockyard.testbed``."""

from dockyard.testbed.cli import main

main()
