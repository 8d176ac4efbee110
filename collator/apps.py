from django.apps import AppConfig


class CollatorConfig(AppConfig):
    """The project package is also a small app: it owns the API's bearer tokens."""

    name = "collator"
    verbose_name = "API access"
    default_auto_field = "django.db.models.BigAutoField"
