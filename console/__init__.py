"""The web console: a process of its own over the public API (like a client), importing
only the `sluice` kernel."""
