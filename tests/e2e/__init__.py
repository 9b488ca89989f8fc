"""End-to-end tests that start real servers."""
