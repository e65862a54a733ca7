import sys

from topologies.perspective_correction.demo import main

sys.exit(main())
