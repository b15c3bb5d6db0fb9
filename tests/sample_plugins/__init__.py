"""Small plugins that kcore's own tests load by dotted path."""
