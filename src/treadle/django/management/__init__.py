"""Django management commands of treadle's Django app (composition layer; nothing else here)."""
