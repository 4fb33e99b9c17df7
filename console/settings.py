"""One settings module, driven by the environment (see README: Configuration)."""

from __future__ import annotations

import ipaddress
import os
import warnings
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from console.env import database_from_url, env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or "dev-only-insecure-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Embedded servers start only when the URLs are unset (a newcomer's machine); see console/embedded.
# The app connects as DATABASE_URL's role; `manage.py migrate` as DATABASE_OWNER_URL's when set
# (console/db_roles.py: the app's role must not own the audit table).
DATABASE_URL = os.environ.get("DATABASE_URL")
HUB_EMBEDDED_DATABASE = not DATABASE_URL
if HUB_EMBEDDED_DATABASE:
    from console import embedded

    DATABASE_URL, DATABASE_OWNER_URL = embedded.postgres_urls()
    os.environ["DATABASE_URL"] = DATABASE_URL
else:
    DATABASE_OWNER_URL = env_str("DATABASE_OWNER_URL")
if (
    DATABASE_OWNER_URL
    and database_from_url(DATABASE_OWNER_URL)["NAME"] != database_from_url(DATABASE_URL)["NAME"]
):
    raise ImproperlyConfigured("DATABASE_OWNER_URL must name the same database as DATABASE_URL")
REDIS_URL = os.environ.get("REDIS_URL")
if not REDIS_URL:
    from console import embedded

    REDIS_URL = os.environ["REDIS_URL"] = embedded.redis_url()

DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "django_htmx",
    "channels",
    "channels_app",
    "console",
]

MIDDLEWARE = [
    # First: forwarded headers count only from a trusted proxy (HUB_TRUSTED_PROXIES).
    "console.security.ProxyHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "console.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "console.security.IdleTimeoutMiddleware",
    # Authorization: Bearer hub_… signs an API request in with the token's role.
    "console.tokens.TokenMiddleware",
    "console.access.LoginRequiredMiddleware",
    # Deny by default: every resolved view must declare its minimum role (console.access).
    "console.access.RoleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"
WSGI_APPLICATION = None

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
                "console.oidc.context",
            ],
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The lockout backend goes first: it refuses a locked username+IP before any password is checked.
AUTHENTICATION_BACKENDS = [
    "console.security.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# --- Single sign-on (console/oidc.py), on when OIDC_RP_CLIENT_ID is set.
OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_RP_CLIENT_SECRET = env_str("OIDC_RP_CLIENT_SECRET")
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env_str("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_OP_JWKS_ENDPOINT") or None
OIDC_OP_ISSUER = env_str("OIDC_OP_ISSUER")  # checked against the ID token's iss when set
OIDC_RP_SIGN_ALGO = env_str("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile")
OIDC_USE_PKCE = True
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_ROLE_CLAIM = env_str("OIDC_ROLE_CLAIM", "groups")
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"


def _oidc_role_map(text: str):
    from console.oidc_roles import parse_role_map

    try:
        return parse_role_map(text)
    except ValueError as exc:
        raise ImproperlyConfigured(f"OIDC_ROLE_MAP: {exc}") from None


OIDC_ROLE_MAP = _oidc_role_map(env_str("OIDC_ROLE_MAP"))
if OIDC_ENABLED:
    _missing = [
        name
        for name in (
            "OIDC_RP_CLIENT_SECRET",
            "OIDC_OP_AUTHORIZATION_ENDPOINT",
            "OIDC_OP_TOKEN_ENDPOINT",
            "OIDC_OP_USER_ENDPOINT",
        )
        if not globals()[name]
    ]
    if OIDC_RP_SIGN_ALGO.startswith(("RS", "ES")) and not OIDC_OP_JWKS_ENDPOINT:
        _missing.append("OIDC_OP_JWKS_ENDPOINT")
    if _missing:
        raise ImproperlyConfigured(f"OIDC_RP_CLIENT_ID is set; also set {', '.join(_missing)}")
    AUTHENTICATION_BACKENDS.append("console.oidc.RoleMappingBackend")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"  # the Dashboard: every role lands there
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", False)
# Signed out after this many seconds without a click (0: off); background refreshes do not count.
SESSION_IDLE_TIMEOUT = env_int("SESSION_IDLE_TIMEOUT", 30 * 60)
# --- Behind a reverse proxy: the client address comes from X-Forwarded-For only when the direct
# peer is one of these addresses or networks (console.audit.client_ip); else REMOTE_ADDR.
HUB_TRUSTED_PROXIES = env_list("HUB_TRUSTED_PROXIES", [])
for _entry in HUB_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_entry, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"HUB_TRUSTED_PROXIES: {_entry!r} is not an IP address or network"
        ) from None
# TLS ends at the proxy, which says so in X-Forwarded-Proto (believed from trusted proxies only
# when HUB_TRUSTED_PROXIES is set); request.is_secure() then follows it, and with it HSTS.
HUB_BEHIND_TLS_PROXY = env_bool("HUB_BEHIND_TLS_PROXY", False)
if HUB_BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", HUB_BEHIND_TLS_PROXY)
# HSTS only where TLS is on (secure cookies say it is); Django sends it on HTTPS responses only.
SECURE_HSTS_SECONDS = env_int(
    "SECURE_HSTS_SECONDS", 365 * 24 * 3600 if SESSION_COOKIE_SECURE else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "console.api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # The role check itself runs in console.access.RoleMiddleware; this repeats it inside DRF.
    "DEFAULT_PERMISSION_CLASSES": ["console.api.auth.DeclaredRole"],
    # JSON bodies bounded in depth and size (adapters/codecs/bounded_json.py).
    "DEFAULT_PARSER_CLASSES": [
        "console.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "console.api.pagination.Pages",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Integration hub API",
    "VERSION": "1",
    "DESCRIPTION": "Every route needs a role; send `Authorization: Bearer hub_…` (see README).",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a "state" or "status": each enum by its own name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "AlertStateEnum": "channels_app.models.alerts.Alert.State",
        "AlertNoticeStateEnum": "channels_app.models.alerts.AlertNotice.State",
        "ReplayJobStateEnum": "channels_app.models.replay.ReplayJob.State",
        "SourceStateEnum": "channels_app.models.heartbeat.SourceHeartbeat.State",
        "MessageStatusEnum": "channels_app.models.traffic.Message.Status",
        "DeliveryStatusEnum": "channels_app.models.traffic.Delivery.Status",
    },
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

# --- Celery: one queue per stage so a slow destination cannot starve processing.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_PREFETCH", 4)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "channels_app.tasks.process_messages": {"queue": "process"},
    "channels_app.tasks.deliver": {"queue": "deliver"},
    "channels_app.tasks.sweep": {"queue": "default"},
    "channels_app.tasks.prune_bodies": {"queue": "default"},
    "channels_app.tasks.rollup_stats": {"queue": "default"},
    "channels_app.tasks.evaluate_alerts": {"queue": "default"},
    "channels_app.tasks.send_alert_notice": {"queue": "default"},
    # Bulk replays: a few statements per 500 messages; the deliveries they reset go to "deliver".
    "channels_app.tasks.replay_job": {"queue": "default"},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
if CELERY_BROKER_URL.partition("://")[0] in ("redis", "rediss"):
    # kombu's, closing cleanly after Redis vanished; else a worker may exit when Redis restarts.
    CELERY_BROKER_TRANSPORT = "console.broker:Transport"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_TIME_LIMIT = 300
# Celery's Django fixup would close the database connection around every task (a new connection
# per task costs more than the task). Keep it; channels_app.tasks drops it when it is unusable
# or older than CONN_MAX_AGE.
CELERY_DB_REUSE_MAX = 100_000
CELERY_BEAT_SCHEDULE = {
    # A sweep still waiting when the next is due expires: sweeps never pile up behind a busy worker.
    "sweep": {
        "task": "channels_app.tasks.sweep",
        "schedule": env_int("SWEEP_EVERY_S", 5),
        "options": {"expires": env_int("SWEEP_EVERY_S", 5)},
    },
    # Retention: bodies past their channel's retention_days are pruned (channels_app/retention.py).
    "prune-bodies": {
        "task": "channels_app.tasks.prune_bodies",
        "schedule": env_int("RETENTION_EVERY_S", 3600),
    },
    # Alert rules measured against the statistics and the queue (channels_app/alerts.py).
    "evaluate-alerts": {
        "task": "channels_app.tasks.evaluate_alerts",
        "schedule": env_int("ALERTS_EVERY_S", 15),
        "options": {"expires": env_int("ALERTS_EVERY_S", 15)},
    },
    # Closed minutes of statistics from Redis into PostgreSQL (channels_app/stats.py).
    "rollup-stats": {
        "task": "channels_app.tasks.rollup_stats",
        "schedule": env_int("STATS_ROLLUP_EVERY_S", 30),
        "options": {"expires": env_int("STATS_ROLLUP_EVERY_S", 30)},
    },
}

# Alert notices by email: printed to the console unless a real backend is configured.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "hub@localhost")

# --- Pipeline knobs
HUB = {
    # Work older than this with no progress is enqueued again by the sweeper (Redis may have lost it).
    "SWEEP_AFTER_S": env_int("SWEEP_AFTER_S", 10),
    # A delivery claim outlives its send timeout by this much before its worker is presumed dead.
    "CLAIM_MARGIN_S": env_int("CLAIM_MARGIN_S", 30),
    "LISTEN_HOST": env_str("LISTEN_HOST", "127.0.0.1"),
    "MAX_MESSAGE_BYTES": env_int("MAX_MESSAGE_BYTES", 1024 * 1024),
    # No HTTP request body may be larger (console/body_limit.py): keep it above every HTTP
    # channel's max_message_bytes, whose larger bodies are refused but their head kept.
    "MAX_REQUEST_BYTES": env_int("MAX_REQUEST_BYTES", 32 * 1024 * 1024),
    "OUTBOX_DIR": env_str("OUTBOX_DIR", str(BASE_DIR / "var" / "outbox")),
    # Every hub process writes its heartbeat this often (channels_app/process_heartbeat.py); 0: none.
    "HEARTBEAT_EVERY_S": env_int("HEARTBEAT_EVERY_S", 10),
    # The pipeline's batch statements are prepared on the server (channels_app/pipeline/prepared.py);
    # false behind a pooler that cannot keep prepared statements.
    "PREPARED_STATEMENTS": env_bool("HUB_PREPARED_STATEMENTS", True),
}

# --- Encryption at rest (channels_app/sealing.py): comma-separated Fernet keys, the first seals,
# all open. Unset: the embedded setup makes and keeps one under var/; an external database refuses
# to start without one unless HUB_STORE_IN_CLEAR=true says to store bodies and secrets in clear.
HUB_ENCRYPTION_KEYS = env_list("HUB_ENCRYPTION_KEYS", [])
HUB_STORE_IN_CLEAR = env_bool("HUB_STORE_IN_CLEAR", False)
if not HUB_ENCRYPTION_KEYS and not HUB_STORE_IN_CLEAR:
    if not HUB_EMBEDDED_DATABASE:
        raise ImproperlyConfigured(
            "HUB_ENCRYPTION_KEYS is not set: message bodies and destination secrets would be "
            "stored in clear. Set it (see README: Security settings), or set "
            "HUB_STORE_IN_CLEAR=true to store them in clear on purpose."
        )
    from console import embedded

    HUB_ENCRYPTION_KEYS = [embedded.encryption_key()]
    # Processes started from this one (workers, tests' helpers) seal with the same key.
    os.environ["HUB_ENCRYPTION_KEYS"] = HUB_ENCRYPTION_KEYS[0]


def _check_fernet_keys(found: list[str]) -> None:
    from cryptography.fernet import Fernet

    for position, key in enumerate(found, start=1):
        try:
            Fernet(key.encode())
        except ValueError:
            raise ImproperlyConfigured(
                f"HUB_ENCRYPTION_KEYS: key {position} is not a Fernet key; make one with "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from None


_check_fernet_keys(HUB_ENCRYPTION_KEYS)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # No message bodies, tokens or passwords in any log line (console/logging.py).
    "filters": {"scrub": {"()": "console.logging.ScrubFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["scrub"]}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # httpx logs every request URL at INFO; URLs may carry tokens, so only warnings pass.
    "loggers": {"django.db.backends": {"level": "INFO"}, "httpx": {"level": "WARNING"}},
}
WHITENOISE_USE_FINDERS = True
# Static files are served from the finders (static/ and app folders) unless collectstatic has run.
warnings.filterwarnings("ignore", message="No directory at")
