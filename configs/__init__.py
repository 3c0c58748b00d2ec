"""The TOML presets: default.toml, one per variant, and study presets (read by fastmix.config)."""
