"""Start memchat: ``python agent.py --help`` lists the options."""

from memchat.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
