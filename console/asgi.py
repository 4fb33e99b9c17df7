import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
# Load Django before anything that imports models (consumers, routing).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from channels_app import process_heartbeat  # noqa: E402
from console.body_limit import BodyLimit  # noqa: E402
from console.routing import websocket_urlpatterns  # noqa: E402

process_heartbeat.start("web")

application = ProtocolTypeRouter(
    {
        "http": BodyLimit(django_asgi_app, settings.HUB["MAX_REQUEST_BYTES"]),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
