import sys

from ocssd_vfu.cli import main

sys.exit(main())
