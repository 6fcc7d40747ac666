"""Angel One SmartAPI: its tick packets and the safe door to the official ``smartapi-python``.

Angel's vocabulary (``symboltoken``, ``transactiontype``, exchange types) and the SDK never
leave this folder. ``_sdk`` imports the SDK with its import-time IP lookup and log-file side
effects shut off; ``packets`` encodes and decodes ``SmartWebSocketV2``'s binary ticks.
Importing this package imports neither.
"""
