"""The model server: its HTTP client, the SDK agent that talks to it, and its failures as one line."""
