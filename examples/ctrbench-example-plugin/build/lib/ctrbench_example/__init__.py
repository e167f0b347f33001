"""Example third-party ctrbench plugin."""
