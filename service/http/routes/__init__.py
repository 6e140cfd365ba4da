"""One router per resource, all under ``/v1``.

The app includes each of them itself: a router included in a router that is included in
the app costs FastAPI a second round of route matching on every request.
"""

from service.http.routes import batch, ops, sessions, tensors

ROUTERS = (sessions.router, tensors.router, ops.router, batch.router)
