"""``POST /v1/chat/completions``: its OpenAI models, conversion to the backend protocol, serving."""
