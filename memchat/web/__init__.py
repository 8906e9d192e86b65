"""``memchat web``: the chat page, on the same memory and turns as the terminal.

``serve`` starts Chainlit with ``app``, the page itself; ``guard`` and ``logins``
stand in front of all of it (origins, headers, uploads; login limits and logins
that end); ``appearance`` and ``assets/`` make the page memchat's own.
"""
