"""The HTTP edge: errors, request parsing, middlewares, routing and the API description."""
