"""Teardown benchmark: Ctrl-C on N replicas that ignore SIGTERM, podctl vs docker-compose down."""
