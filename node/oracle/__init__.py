"""The committee's price oracle, node side: sources, the feeder, signed observations
(the engine side, the index and mark prices, is matching/oracle.py)."""
