"""seqnet trader SDK: sign intents locally, trade on any committee node, stream updates.

Independent of the node's runtime: it imports only `node.intents` (the signed-intent
format, PROTOCOL.md §4) from the node package. See docs/API.md, "Trader SDK".

    from seqnet_sdk import Client, SyncClient
"""

from seqnet_sdk.client import ApiError, Client, HistoryPage, IntentResult
from seqnet_sdk.stream import LocalBook, Stream, StreamClosed
from seqnet_sdk.sync import SyncClient
from seqnet_sdk.units import AssetInfo, MarketInfo, Markets, OffGrid

__all__ = [
    "ApiError",
    "AssetInfo",
    "Client",
    "HistoryPage",
    "IntentResult",
    "LocalBook",
    "MarketInfo",
    "Markets",
    "OffGrid",
    "Stream",
    "StreamClosed",
    "SyncClient",
]
