"""The report: tables (report.md) and figures (PNG) from evaluated runs."""
