"""The VLM backend's engine: chat request parsing, model loading and token generation."""
