"""Runs an absl main so that expected failures end in one line and a non-zero exit."""

import sys

from absl import app


def run(main) -> None:
    """`app.run(main)`, with missing files, bad values and non-finite losses reported as
    one line on stderr (exit status 1) instead of a traceback."""

    def guarded(argv):
        try:
            return main(argv)
        except (FileNotFoundError, ValueError, FloatingPointError) as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)

    app.run(guarded)
