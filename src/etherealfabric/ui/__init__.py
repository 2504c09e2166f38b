"""The web UI: ``etherealfabric ui`` serves pages and a JSON API over the run journal.

Read-only by construction: every request opens the journal read-only
(``Journal(path, read_only=True)``) and closes it before answering.

Modules, one job each:

- ``_command``: the ``ui`` command (imports only click; the web framework on use);
- ``_app``: the Starlette app and its routes;
- ``_gates``: the checks before a request reaches them (Host on loopback, cross-site
  requests, the token, a damaged journal); ``_hosts``: which names are loopback;
- ``_views``: the API's answers as plain dicts (no web framework);
- ``_queries``: what the views read, named for them: the journal's read-only bulk questions
  (``journal.browse``: a run's attempts and state, graph rows, polling stamps, cache sizes);
- ``_graphs``: a run's graph rows, layout and SVG, each kept while valid (layouts per structure);
- ``_layout``: the layered graph layout (topological generations), its SVG and its compact form
  (flat arrays, which the page draws on a canvas for runs of more than 1,000 nodes);
- ``_plan``: ``plan`` asked of the CLI in a child process (user code never runs in the server);
- ``templates/`` and ``static/``: the pages, their scripts (``app.js``; ``graph.js``, the canvas
  graph) and styles (no build step, no CDN).

Importing this package imports nothing; the CLI imports ``_command`` (click only). See
``docs/ui.md``.
"""
