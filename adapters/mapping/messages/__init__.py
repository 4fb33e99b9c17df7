"""Message maps: one module per message family, registered with `registry.handles`."""
