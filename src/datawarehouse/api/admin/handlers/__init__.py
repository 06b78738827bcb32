"""Admin API handlers, one module per noun; each declares its operations with
``registry.operation`` and calls one service per operation."""
