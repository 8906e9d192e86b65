"""memchat: a terminal chat agent that remembers each user across restarts."""

__version__ = "0.1.0"
