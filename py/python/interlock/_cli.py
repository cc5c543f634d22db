"""The ``interlock`` command, as the package's console script (the same program as the
``interlock`` binary built by cargo)."""

import sys

from ._interlock import cli_main


def main() -> None:
    sys.exit(cli_main(sys.argv))


if __name__ == "__main__":
    main()
