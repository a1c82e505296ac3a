"""Vendor market-data clients (Polygon, Alpaca, Unusual Whales) and their shared HTTP machinery."""
