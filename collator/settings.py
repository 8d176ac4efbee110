"""Django settings, built from the seed's JSON config file (see collator/local_config.py).

Everything an operator sets lives in that file or in environment variables; this module
only translates it. Nothing here holds business rules.
"""

from __future__ import annotations

import os
from pathlib import Path

from collator.local_config import SET_ME, LocalConfigError, load_local_config, unset_values

BASE_DIR = Path(__file__).resolve().parent.parent
COLLATOR = load_local_config()
WORK_DIR: Path = COLLATOR.system.work_dir
WORK_DIR.mkdir(parents=True, exist_ok=True)

VERSION = "0.1.0"


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    # A stable per-installation key, kept in the work dir, so that the embedded default
    # needs no setup and sessions survive restarts.
    key_file = WORK_DIR / ".secret_key"
    if not key_file.exists():
        import secrets

        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()

DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "*").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files: /api/docs works offline
    "django_celery_beat",
    "collator",  # management commands (sync_schedule)
    "members",
    "metrics",
    "billing",
]

MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's CSS and JS under gunicorn, with no web server in front (the demo).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "collator.urls"
WSGI_APPLICATION = "collator.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
# MySQL/MariaDB when the config's Mysql block names a host, SQLite in the work dir otherwise.
if COLLATOR.mysql.enabled:
    missing = unset_values(COLLATOR.mysql)
    if missing:
        raise LocalConfigError(f"Mysql.{', Mysql.'.join(missing)} is still {SET_ME}")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": COLLATOR.mysql.host,
            "PORT": COLLATOR.mysql.port,
            "USER": COLLATOR.mysql.user,
            "PASSWORD": COLLATOR.mysql.password,
            "NAME": COLLATOR.mysql.database,
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                "charset": "utf8mb4",
                # Every DATETIME holds UTC (data-model §2), whatever the server's zone is.
                "init_command": "SET time_zone = '+00:00', sql_mode = 'STRICT_TRANS_TABLES'",
            },
            "TEST": {
                # Each concurrent test run (CI, a developer, a benchmark) can pick its own.
                "NAME": os.environ.get("COLLATOR_TEST_DB", "test_collator"),
                "CHARSET": "utf8mb4",
                "COLLATION": "utf8mb4_general_ci",
            },
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": WORK_DIR / "collator.sqlite3",
            # The demo runs several processes on one file. WAL lets readers go on while one
            # writes; IMMEDIATE transactions take the write lock when they begin, so a
            # transaction that read first never fails at once ("database is locked") when
            # it then writes after another process did; the timeout is how long to wait.
            "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"},
            # Tests use a file too, as the demo does (an in-memory database shares its cache
            # between threads, with table locks that no timeout waits for).
            "TEST": {"NAME": str(WORK_DIR / "test-collator.sqlite3")},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = WORK_DIR / "static"
# Without a collected STATIC_ROOT (a fresh checkout), WhiteNoise finds the files in the apps;
# the (empty) folder is made so that it does not warn about it on every start.
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True

# --- Logging: one structured line per event ----------------------------------------------
_LOG_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "fatal": "CRITICAL",
}
LOG_LEVEL = _LOG_LEVELS.get(COLLATOR.system.log_level.strip().lower(), "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["collator.throttling.AnonThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": os.environ.get("API_ANON_THROTTLE_RATE", "6000/minute")},
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "IBP Collator API",
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CORS_ALLOW_ALL_ORIGINS = True
# No path matches the regex: collator/not_found.py enables CORS for the API routes only.
CORS_URLS_REGEX = r"(?!)"
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "origin", "x-requested-with"]
CORS_ALLOW_METHODS = ["GET", "OPTIONS"]
CORS_PREFLIGHT_MAX_AGE = 3600  # api-contract §1.4 (the package's default is a day)
API_BILLING_REQUIRES_TOKEN = _env_bool("API_BILLING_REQUIRES_TOKEN", False)

# --- Billing rules (DECISIONS 13) ---------------------------------------------------------
SLA_CREDIT_POLICY = os.environ.get("SLA_CREDIT_POLICY", "below_threshold")
# (uptime floor in percent, credit in percent of base), highest floor first.
SLA_CREDIT_TIERS = [("99.99", "0"), ("99.9", "10"), ("99.0", "25"), ("0", "100")]
# The class that renders billing PDFs (billing/rendering.py BillingPdfRenderer). The default
# writes no PDF and says so; the PDF documents issue provides the real one.
BILLING_PDF_RENDERER = os.environ.get("BILLING_PDF_RENDERER", "billing.pdf.renderer.XhtmlPdfRenderer")
# A month's billing lock older than this is taken over (its holder died).
BILLING_LOCK_TIMEOUT_SECONDS = int(os.environ.get("BILLING_LOCK_TIMEOUT_SECONDS", "3600"))

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = WORK_DIR / "celery-broker"
    (_broker_dir / "out").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "data_folder_processed": str(_broker_dir / "processed"),
        # Without this, broadcast control messages land in a `control/` folder in the CWD.
        "control_folder": str(_broker_dir / "control"),
    }
CELERY_TASK_ALWAYS_EAGER = _env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Imported by beat and workers at start-up: connects beat_init to the code-owned schedule sync.
CELERY_IMPORTS = ("collator.schedule",)
CELERY_TASK_IGNORE_RESULT = True

# --- Caches -------------------------------------------------------------------------------
# "default" is shared by every process (gunicorn workers, the NATS listener, celery): per-IP
# throttle counts and the usage-rollup version that keys the API's response cache
# (metrics/api_cache.py). Redis when REDIS_URL (or a redis:// Celery broker) is set, which
# needs the `redis` package; else the database's cache table, which needs no other service
# and works on SQLite and MariaDB (created by collator/migrations/0002_cache_table.py, or
# `manage.py createcachetable`). "api_responses" is each process's own memory in front of it.
_REDIS_URL = os.environ.get("REDIS_URL", "").strip() or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
if _REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _REDIS_URL,
            "KEY_PREFIX": "collator",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "collator_cache",
            "KEY_PREFIX": "collator",
            "OPTIONS": {"MAX_ENTRIES": int(os.environ.get("CACHE_MAX_ENTRIES", "5000"))},
        }
    }
CACHES["api_responses"] = {
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "api-responses",
    "OPTIONS": {"MAX_ENTRIES": int(os.environ.get("API_RESPONSE_CACHE_ENTRIES", "64"))},
}
# Seconds a cached API response may be served; a rollup refresh invalidates it at once anyway.
API_RESPONSE_CACHE_SECONDS = int(os.environ.get("API_RESPONSE_CACHE_SECONDS", "3600"))
# How many proxies in front of the API append to X-Forwarded-For. 0 (the default): the header
# is ignored and the throttle counts the connecting address, which a client cannot forge.
NUM_PROXIES = int(os.environ.get("NUM_PROXIES", "0"))
REST_FRAMEWORK["NUM_PROXIES"] = NUM_PROXIES

# --- Matrix alerts (metrics/alerts.py, nats-protocol §11) ----------------------------------
# At most this many alerts go out one by one per window; the rest of the window is folded
# into one summary message (so a burst gives at most LIMIT + 1 messages per window).
MATRIX_ALERT_BURST_LIMIT = int(os.environ.get("MATRIX_ALERT_BURST_LIMIT", "10"))
MATRIX_ALERT_BURST_WINDOW_SECONDS = float(os.environ.get("MATRIX_ALERT_BURST_WINDOW_SECONDS", "60"))
# Alerts waiting for the homeserver; beyond this they are dropped, logged and counted.
MATRIX_ALERT_QUEUE_SIZE = int(os.environ.get("MATRIX_ALERT_QUEUE_SIZE", "1000"))
# While the homeserver is unreachable the alerts wait, in order; the oldest is tried again
# after RETRY_INITIAL seconds, doubling up to RETRY_MAX. Every SWEEP seconds, open outages
# younger than SWEEP_MAX_AGE that were never announced (a restart, a lost send) are.
MATRIX_ALERT_RETRY_INITIAL_SECONDS = float(os.environ.get("MATRIX_ALERT_RETRY_INITIAL_SECONDS", "15"))
MATRIX_ALERT_RETRY_MAX_SECONDS = float(os.environ.get("MATRIX_ALERT_RETRY_MAX_SECONDS", "300"))
MATRIX_ALERT_SWEEP_SECONDS = float(os.environ.get("MATRIX_ALERT_SWEEP_SECONDS", "60"))
MATRIX_ALERT_SWEEP_MAX_AGE_SECONDS = float(os.environ.get("MATRIX_ALERT_SWEEP_MAX_AGE_SECONDS", "86400"))

# --- Finalize input (metrics/services.py) ----------------------------------------------------
# A DecidedAt further ahead of our clock than this is refused (decided_in_future): a monitor
# whose clock runs fast must not open an outage in the future that swallows real ones.
NATS_FINALIZE_FUTURE_TOLERANCE_SECONDS = float(os.environ.get("NATS_FINALIZE_FUTURE_TOLERANCE_SECONDS", "300"))

# --- Listener durability (metrics/durability.py, metrics/durable_finalize.py) ---------------
# While the database is unreachable, finalizes and usage replies are held in order and
# retried with back-off (base doubling up to max). Beyond the bound: finalizes refuse the
# newest (held order kept), usage drops the oldest reply; both logged and counted.
NATS_FINALIZE_QUEUE_MAX = int(os.environ.get("NATS_FINALIZE_QUEUE_MAX", "100000"))
NATS_USAGE_QUEUE_MAX = int(os.environ.get("NATS_USAGE_QUEUE_MAX", "48"))
NATS_DB_RETRY_BASE_SECONDS = float(os.environ.get("NATS_DB_RETRY_BASE_SECONDS", "0.5"))
NATS_DB_RETRY_MAX_SECONDS = float(os.environ.get("NATS_DB_RETRY_MAX_SECONDS", "30"))
# Opt-in: read consensus.finalize through a durable JetStream stream and consumer (created
# when missing); falls back to the core subscription when the server has no JetStream.
NATS_DURABLE_FINALIZE = _env_bool("NATS_DURABLE_FINALIZE", False)
NATS_FINALIZE_STREAM = os.environ.get("NATS_FINALIZE_STREAM", "IBP_FINALIZE")
NATS_FINALIZE_CONSUMER = os.environ.get("NATS_FINALIZE_CONSUMER", "")  # default "<NodeID>_finalize"
NATS_FINALIZE_STREAM_RETENTION = os.environ.get("NATS_FINALIZE_STREAM_RETENTION", "limits")
NATS_FINALIZE_STREAM_MAX_AGE_SECONDS = float(os.environ.get("NATS_FINALIZE_STREAM_MAX_AGE_SECONDS", str(7 * 24 * 3600)))
NATS_FINALIZE_MAX_ACK_PENDING = int(os.environ.get("NATS_FINALIZE_MAX_ACK_PENDING", "1000"))
