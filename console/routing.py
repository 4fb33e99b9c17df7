"""Websocket routes. Consumers reject anonymous sockets in connect(); dashboards join here."""

websocket_urlpatterns: list = []
