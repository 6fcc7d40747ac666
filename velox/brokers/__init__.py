"""Broker boundary (protocol in ``base``) and one module/folder per venue."""
