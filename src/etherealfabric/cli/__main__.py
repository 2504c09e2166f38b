"""``python -m etherealfabric.cli`` is the ``etherealfabric`` command too."""

from . import main

main()
