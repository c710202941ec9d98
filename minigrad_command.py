"""The `minigrad` command's entry point. It is a module of its own, outside the package,
so that it runs before NumPy and minigrad load: Ctrl-C while they load ends the command
as it does later (exit status 130 and one line), not with a traceback."""

import sys


def main() -> int:
    """Import the command line (minigrad.models.cli), then run it on sys.argv."""
    try:
        from minigrad.models.cli import main as run

        return run()
    except KeyboardInterrupt:  # before the command's own handler is reached
        print("minigrad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
