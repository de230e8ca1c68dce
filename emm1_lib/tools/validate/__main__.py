"""`python -m emm1_lib.tools.validate ...`: the same as `emm1 validate ...`."""
import sys

from emm1_lib.tools.validate.command import cli

sys.exit(cli())
