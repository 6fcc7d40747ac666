"""The web server: login with roles and 2FA, the trader console, the admin page, the JSON API.

``velox serve`` runs it; :func:`velox.web.server.make_server` builds it for tests and scripts.
See ``docs/web.md``.
"""
