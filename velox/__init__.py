"""Velox: research and live trading for Indian markets."""
