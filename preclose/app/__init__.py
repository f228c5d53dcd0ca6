"""The entry points: the CLI, serve, the demo, the CRM functions, the HTTP app, their factories."""
