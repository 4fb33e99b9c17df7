"""The console's URLconf as a deployment with single sign-on configured has it."""

from console.oidc import urlpatterns as sso_patterns
from console.urls import urlpatterns as console_patterns

urlpatterns = [*console_patterns, *sso_patterns]
