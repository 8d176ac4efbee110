from django.apps import AppConfig


class CollatorConfig(AppConfig):
    """The project package is also a small app: it owns the API's bearer tokens."""

    name = "collator"
    verbose_name = "API access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled

        from collator.not_found import cors_enabled_for_api_route

        check_request_enabled.connect(cors_enabled_for_api_route, dispatch_uid="collator-cors-api-routes")
