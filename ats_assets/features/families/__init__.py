"""Feature families: one module per family, each exporting FEATURES."""
