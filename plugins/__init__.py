"""kcore's own plugins, one per folder. Each is found through the ``kcore.plugins`` entry
points and depends only on what :mod:`kcore` exports."""
