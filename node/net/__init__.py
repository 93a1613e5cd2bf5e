"""The network room: authenticated, bounded links between committee members.

    framing.py     frames and sealed records (sans-I/O codec, size limits)
    handshake.py   mutual authentication of two members, session keys
    admission.py   who may start a handshake: slots per source, back-off of failing sources
    inbound.py     the queue of received messages, bounded in bytes per peer and in total
    penalties.py   misbehaviour scores of members, bans with doubling back-off
    transport.py   the Transport: dials, accepts, readers and writers, per-peer queues
    messages.py    the peer boundary: the typed, bounded decoder of every message kind

The transport moves msgpack values between members and knows nothing of what they mean:
the peer boundary (messages.py) checks each message the runtime takes, and the runtime
reports a bad one through `Transport.penalize`. docs/PROTOCOL.md §6 has the bytes;
docs/OPERATIONS.md "Limits and budgets" has every limit, its default and what happens
when it is hit.
"""
