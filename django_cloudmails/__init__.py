"""Send Django's email through the CloudMails API and track every message."""

__version__ = "0.1.0"
