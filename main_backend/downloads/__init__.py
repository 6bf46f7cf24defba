"""Model downloads from the Hugging Face Hub (or a mirror) into the local cache, with progress."""
