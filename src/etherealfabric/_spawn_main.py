"""The ``__main__`` that worker processes import instead of re-running the user's script.

See :func:`etherealfabric.backends._base.no_main_reimport`.
"""
