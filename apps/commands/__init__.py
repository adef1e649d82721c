"""Command functions of the `pitstop` CLI, one module per group; `apps.cli` registers them."""
