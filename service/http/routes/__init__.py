"""One router per resource, its paths under ``/v1``; ``create_app`` adds their routes.

A request is matched against the routes in this order (no two paths overlap): the
autograd commands first, as they are the most frequent and the cheapest to serve.
"""

from service.http.routes import batch, health, ops, sessions, tensors

ROUTERS = (ops.router, batch.router, tensors.router, sessions.router, health.router)
