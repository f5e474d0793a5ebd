"""The WSGI container: environ, request body, the app-thread side of a response."""
