import sys

from r1lab.eval.cli import main

sys.exit(main())
