import sys

from ops.fuzz.cli import main

sys.exit(main())
