"""Websocket routes. Consumers reject anonymous sockets in connect() and re-check on every event."""

from django.urls import path

from console.consumers import DashboardConsumer

websocket_urlpatterns: list = [
    path("ws/dashboard/", DashboardConsumer.as_asgi(), name="ws-dashboard"),
]
