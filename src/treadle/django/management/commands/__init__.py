"""``manage.py server``: see server.py (composition layer; nothing else here)."""
