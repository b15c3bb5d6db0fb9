"""volumes: the built-in volume sources, their writer, the env helpers and the suite."""
