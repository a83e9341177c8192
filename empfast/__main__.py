import sys

from empfast.cli import main

sys.exit(main())
