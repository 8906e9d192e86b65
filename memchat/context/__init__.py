"""What a request carries: the token budget, the running summary, recall by words and by meaning, and the model's memory tool."""
