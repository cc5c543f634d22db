"""The ``interlock`` command, as the package's console script (the same program as the
``interlock`` binary built by cargo)."""

import signal
import sys

from ._interlock import cli_main


def main() -> None:
    # As the binary: Ctrl-C ends it (Python's own handler only sets a flag, which the
    # command, running without the GIL, never looks at). `interlock serve` still catches
    # Ctrl-C itself, and stops cleanly.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(cli_main(sys.argv))


if __name__ == "__main__":
    main()
