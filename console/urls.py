from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from console.security import LoginForm
from console.views import channels, messages

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="messages", permanent=False), name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="login.html", authentication_form=LoginForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("messages/", messages.message_list, name="messages"),
    path("messages/<int:pk>/", messages.message_detail, name="message"),
    path("channels/", channels.channel_list, name="channels"),
]
