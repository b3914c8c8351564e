import sys

from memotune.cli import main

sys.exit(main())
