import sys

from wan_pipeline.cli.main import main

sys.exit(main())
