"""Presentation that is not SQL: reports as text (table, markdown, csv, json, html), a
timeline's lanes and colours, and what threads did drawn as lines."""
