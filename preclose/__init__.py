"""preclose."""
