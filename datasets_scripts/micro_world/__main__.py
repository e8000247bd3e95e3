"""`python -m datasets_scripts.micro_world --root DIR [--seed N] [--pool N] [--captioned N] [--test N] ...`"""

import sys

from .writing import main

sys.exit(main())
