import sys

from edge_server.main import main

sys.exit(main())
