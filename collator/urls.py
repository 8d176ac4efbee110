from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Each app owns its API routes; the prefix is the contract's (api-contract §1.3).
    path("", include("collator.api_urls")),
]
