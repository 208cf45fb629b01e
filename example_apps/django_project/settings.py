"""Settings of the example Django project: only what an LTI tool needs.

The tool lives in the platform's iframe, on another site than the platform.
It uses no session or CSRF cookie: the launch id in each URL ties requests
to the launch, and :func:`~lti_middleware.django.launch_required` views
count it as the CSRF proof. A project that does use Django's session or CSRF
cookies in the iframe needs the cookie settings below (and HTTPS).
"""

from __future__ import annotations

import os
import secrets

DEBUG = False
# A fresh key per process is fine here: nothing signed outlives the process.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "example_apps.django_project.urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "lti_middleware.django.LTIRequestMiddleware",
]

# Pages carry the launch id in their links: no Referer may leak it.
SECURE_REFERRER_POLICY = "no-referrer"

# Cookies in a cross-site iframe must be SameSite=None, which browsers accept
# only with Secure (HTTPS). Browsers blocking third-party cookies drop them
# anyway, so the tool must not depend on them.
SESSION_COOKIE_SAMESITE = "None"
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SAMESITE = "None"
CSRF_COOKIE_SECURE = True

# The tool's pages are framed by the platform: XFrameOptionsMiddleware (DENY)
# is left out of MIDDLEWARE; the views send frame-ancestors instead. Set it
# to your platforms' origins: "*" lets any site frame the tool.
LTI_FRAME_ANCESTORS = os.environ.get("LTI_FRAME_ANCESTORS", "*")

# LTI_CONFIG, the tool's configuration (a TOML path or a ToolConfig), is left
# unset: the middleware then reads the file named by LTI_MIDDLEWARE_CONFIG.
