"""The shipping service: ships paid orders and reports their delivery."""
