"""The quiz as a Django project, wrapped by ``lti_middleware.django``.

Run it under ASGI or WSGI with the TOML file named by
``LTI_MIDDLEWARE_CONFIG``::

    DJANGO_SETTINGS_MODULE=example_apps.django_project.settings \\
    LTI_MIDDLEWARE_CONFIG=lti.toml uvicorn example_apps.django_project.asgi:application
"""
