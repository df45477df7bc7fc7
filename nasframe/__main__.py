"""`python -m nasframe ...` is the `nasframe` command."""

import sys

from nasframe.app.cli import main

sys.exit(main())
