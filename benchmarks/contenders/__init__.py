"""Baseline servers the benchmark runs beside brokercast.

Each reads the same Redis stream (XREAD, COUNT 100, from the newest entry on) and
broadcasts every entry's ``data`` field to every connected client as a Text frame.
They contain no slow-client policy or metrics: they are yardsticks, not products.
"""
