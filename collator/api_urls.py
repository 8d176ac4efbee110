"""API routes, gathered from the apps. No trailing slash is needed (api-contract §1.3)."""

urlpatterns: list = []
