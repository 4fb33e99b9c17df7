"""/api/v1/: the routes of the REST API and its OpenAPI schema."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from console.api import views
from console.api.inbound import InboundView
from console.roles import Role


class SchemaView(SpectacularAPIView):
    required_roles = {"get": Role.VIEWER}


router = SimpleRouter()
router.register("channels", views.ChannelViewSet, basename="api-channel")
router.register("destinations", views.DestinationViewSet, basename="api-destination")
router.register("messages", views.MessageViewSet, basename="api-message")
router.register("deliveries", views.DeliveryViewSet, basename="api-delivery")
router.register("samples", views.SampleViewSet, basename="api-sample")
router.register("replay-jobs", views.ReplayJobViewSet, basename="api-replay-job")
router.register("audit", views.AuditViewSet, basename="api-audit")
router.register("tokens", views.TokenViewSet, basename="api-token")

urlpatterns = [
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("channels/<int:pk>/messages/", InboundView.as_view(), name="api-inbound"),
    *router.urls,
]
