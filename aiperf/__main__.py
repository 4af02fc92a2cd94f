import sys

from aiperf.cli import main

sys.exit(main())
