"""Deterministic cluster simulator for the consensus core (`seqnet sim`)."""
