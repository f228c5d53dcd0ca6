"""Our database: engines and migrations, the repository, the rate-limit log, integration health."""
