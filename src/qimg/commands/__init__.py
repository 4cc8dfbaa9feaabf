"""The commands of the `qimg` CLI, one module per group; `common` holds the app and shared options."""
