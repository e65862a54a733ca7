import sys

from pipeteer.cli import main

sys.exit(main())
