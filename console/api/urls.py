"""/api/v1/: the routes of the REST API and its OpenAPI schema."""

from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from console.api import views
from console.api.inbound import InboundView
from console.roles import Role


class SchemaView(SpectacularAPIView):
    required_roles = {"get": Role.VIEWER}


class IndexView(APIView):
    """What /api/v1/ offers: the collections, the schema and its documentation page."""

    required_roles = {"get": Role.VIEWER}

    @extend_schema(responses=OpenApiTypes.OBJECT, summary="Index of the API's collections")
    def get(self, request):
        link = request.build_absolute_uri
        return Response(
            {
                "api": "integration hub",
                "version": "v1",
                "schema": link(reverse("api-schema")),
                "docs": link(reverse("api-docs")),
                "collections": {
                    prefix: link(reverse(f"{basename}-list"))
                    for prefix, _, basename in router.registry
                },
            }
        )


router = SimpleRouter()
router.register("channels", views.ChannelViewSet, basename="api-channel")
router.register("destinations", views.DestinationViewSet, basename="api-destination")
router.register("messages", views.MessageViewSet, basename="api-message")
router.register("deliveries", views.DeliveryViewSet, basename="api-delivery")
router.register("samples", views.SampleViewSet, basename="api-sample")
router.register("replay-jobs", views.ReplayJobViewSet, basename="api-replay-job")
router.register("audit", views.AuditViewSet, basename="api-audit")
router.register("tokens", views.TokenViewSet, basename="api-token")
router.register("alerts", views.AlertViewSet, basename="api-alert")
router.register("alert-rules", views.AlertRuleViewSet, basename="api-alert-rule")

urlpatterns = [
    path("", IndexView.as_view(), name="api-index"),
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("channels/<int:pk>/messages/", InboundView.as_view(), name="api-inbound"),
    *router.urls,
]
