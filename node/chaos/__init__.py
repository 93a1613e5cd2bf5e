"""Fault injection across real node processes: proxy, harness, checker, scenarios, CLI.

`seqnet chaos` starts a committee of `seqnet node run` processes whose peer links go
through a fault-injecting proxy, drives signed load at them over HTTP, injects one
scenario's faults, heals, and checks the nodes' committed logs against the history of
acknowledged intents (docs/RELIABILITY.md).
"""
