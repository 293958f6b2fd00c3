import sys

from mm1.entry import main

sys.exit(main())
