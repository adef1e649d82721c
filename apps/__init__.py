"""The application layer on top of every package: the `pitstop` CLI, the demo, the alerts."""
