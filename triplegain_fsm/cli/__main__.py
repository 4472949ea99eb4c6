"""`python -m triplegain_fsm.cli ...`: the same as the `triplegain-fsm` console script."""
import sys

from triplegain_fsm.cli import main

sys.exit(main())
