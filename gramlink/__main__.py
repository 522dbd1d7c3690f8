import sys

from gramlink.cli import main

sys.exit(main())
