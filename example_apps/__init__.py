"""Example tools built on lti_middleware: a quiz app and a one-command demo."""
