"""The terminal front end: the prompt, the piped loop, and what is printed and how it is rendered."""
