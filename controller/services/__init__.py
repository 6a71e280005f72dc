"""One module per managed service: what it renders, and how to talk to it."""
