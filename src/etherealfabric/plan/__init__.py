"""plan layer: from a workflow's definition to what a run would do, without running anything.

- ``_graph``: the validated DAG (:class:`Graph`, frozen node specs, deterministic run order).
- ``_keys``: a node's cache key and the components that went into it (``node_key``, ``KeyInfo``).
- ``_plan``: the plan (``make_plan`` -> ``Plan`` of ``PlanEntry``): cached or run, and why; each
  entry carries the key it computed and the record it looked up, so nothing is computed twice.
"""
