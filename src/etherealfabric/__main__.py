"""``python -m etherealfabric`` is the ``etherealfabric`` command (and its entry point)."""

import sys


def main() -> None:
    """The command line; a Ctrl-C while it is still starting (importing) ends it quietly."""
    try:
        from .cli import main as command
    except KeyboardInterrupt:  # nothing ran yet: no traceback, the shell's code for SIGINT
        sys.exit(130)
    command()


if __name__ == "__main__":
    main()
