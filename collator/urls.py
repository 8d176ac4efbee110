from django.contrib import admin
from django.urls import include, path

from metrics.telemetry_views import prometheus_metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    # Each app owns its API routes; the prefix is the contract's (api-contract §1.3).
    path("", include("collator.api_urls")),
    # Prometheus scrape of the NATS listener's counters (metrics/telemetry.py).
    path("metrics", prometheus_metrics, name="prometheus-metrics"),
]

# Unknown paths: Go's plain-text 404 (collator/not_found.py).
handler404 = "collator.not_found.page_not_found"
