import sys

from fmclient.cli import main

sys.exit(main())
