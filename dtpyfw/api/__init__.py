"""FastAPI integration: ``create_app``, request context, problem details, health routes.

Needs the ``api`` extra (``pip install 'dtpyfw[api]'``); importing this package
does not import FastAPI until an app is created.
"""

from dtpyfw.api._app import create_app
from dtpyfw.api._middleware import RequestContextMiddleware
from dtpyfw.api._problems import PROBLEM_JSON, problem

__all__ = ["PROBLEM_JSON", "RequestContextMiddleware", "create_app", "problem"]
