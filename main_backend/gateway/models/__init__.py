"""``GET /v1/models``: which names the gateway answers to, local and external."""
