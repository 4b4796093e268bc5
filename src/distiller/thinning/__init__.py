"""thinning."""
