"""The HTTP gateway (Falcon under gunicorn) and the ``smartcharge`` command line."""
