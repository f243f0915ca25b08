import sys

from ecr_agent.cli import main

sys.exit(main())
