"""Data preparation: raw sources (IDX, zip, generated) -> validated .beton files + manifest.json
(``fastmix convert``). Installed as ``fastmix.converters``; knows nothing of training."""
