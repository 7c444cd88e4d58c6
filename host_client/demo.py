"""`python -m host_client.demo`: the public name of the demo (host_client.cli.demo)."""
import sys

from host_client.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
