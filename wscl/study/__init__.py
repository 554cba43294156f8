"""A study: the grid of runs, aggregation into tables, reproduction verdicts, figures, the report and the
archive."""
