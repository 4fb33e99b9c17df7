from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels and traffic"
    default_auto_field = "django.db.models.BigAutoField"
