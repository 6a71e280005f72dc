"""Mailyard controller: the REST API, the `mailyard` command and the config pipeline."""
