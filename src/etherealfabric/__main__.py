"""``python -m etherealfabric`` is the ``etherealfabric`` command."""

from .cli import main

main()
