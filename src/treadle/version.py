"""treadle's version, and nothing else: the one place it is written.

Pure layer: imported by the package and by wsgi/environ.py (SERVER_SOFTWARE), so it must
stay a single assignment that imports nothing.
"""

__version__ = "0.1.0"
