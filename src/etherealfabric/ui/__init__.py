"""The web UI: ``etherealfabric ui`` serves pages and a JSON API over the run journal.

Read-only by construction: every request opens the journal read-only
(``Journal(path, read_only=True)``) and closes it before answering.

Modules, one job each:

- ``_command``: the ``ui`` command (imports only click; the web framework on use);
- ``_app``: the Starlette app, its routes and the token gate;
- ``_views``: the API's answers as plain dicts (no web framework);
- ``_queries``: the read-only SQL the CLI never needed (bulk graph rows, polling stamps,
  cache sizes);
- ``_layout``: the layered graph layout (networkx generations) and its SVG;
- ``_plan``: ``plan`` asked of the CLI in a child process (user code never runs in the server);
- ``templates/`` and ``static/``: the pages, their script and styles (no build step, no CDN).

Importing this package imports nothing; the CLI imports ``_command`` (click only). See
``docs/ui.md``.
"""
